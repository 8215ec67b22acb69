//! A registry repository in the console: each image's manifests with their tags and digests,
//! and the reference that pulls each. The API's own listing (`dockerImages`), so the same
//! permission (`artifactregistry.dockerimages.list`).

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;

use super::STYLESHEET;
use super::pages::{PageError, render, user_name};
use super::session::Session;
use crate::registry::repositories::{host, image_versions};
use crate::state::AppState;
use crate::time_util;

pub struct ImageRow {
    pub image: String,
    pub digest: String,
    pub tags: Vec<String>,
    pub size: u64,
    pub media_type: String,
    pub uploaded: String,
    /// `HOST/PROJECT/REPOSITORY/IMAGE@DIGEST`, what a pull or a launch names.
    pub reference: String,
}

#[derive(Template)]
#[template(path = "console/repository.html")]
struct RepositoryPage<'a> {
    stylesheet: &'a str,
    user: Option<&'a str>,
    csrf: &'a str,
    project: &'a str,
    location: &'a str,
    repository: &'a str,
    description: &'a str,
    /// The registry's host, as image references name it.
    host: &'a str,
    images: Vec<ImageRow>,
}

pub async fn repository(
    State(state): State<AppState>,
    session: Session,
    Path(path): Path<(String, String, String)>,
) -> Result<Response, PageError> {
    let (record, versions) = image_versions(&state, &session.principal, &path).await?;
    let prefix = format!(
        "{}/{}/{}",
        host(&state),
        record.project_id.as_str(),
        record.repository_id
    );
    let images = versions
        .into_iter()
        .map(|v| ImageRow {
            reference: format!("{prefix}/{}@{}", v.image, v.digest),
            image: v.image,
            digest: v.digest,
            tags: v.tags,
            size: v.size,
            media_type: v.media_type,
            uploaded: time_util::rfc3339_seconds(v.create_time),
        })
        .collect();
    let user = user_name(&session.principal);
    Ok(render(&RepositoryPage {
        stylesheet: STYLESHEET,
        user: Some(&user),
        csrf: &session.record.csrf_token,
        project: record.project_id.as_str(),
        location: &record.location,
        repository: &record.repository_id,
        description: &record.description,
        host: host(&state),
        images,
    }))
}
