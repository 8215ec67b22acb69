//! A bucket in the console: its objects (under a prefix), download, and upload with a
//! progress bar. The same permissions as the API's `objects.list`, `objects.get` and
//! `objects.insert`, through the storage service's own functions.
//!
//! A downloaded object is served as an attachment of type `application/octet-stream`
//! whatever its stored content type: the console's origin must never render a tenant's bytes
//! as a page or run them as a script (its CSP allows scripts from this origin).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use askama::Template;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use super::STYLESHEET;
use super::pages::{PageError, render, user_name};
use super::session::{Session, check_csrf, check_origin};
use crate::error::ApiError;
use crate::state::AppState;
use crate::storage::{authorized_bucket, objects, upload};
use crate::time_util;

/// The most objects a page lists; a prefix narrows the rest.
const PAGE: usize = 500;

pub struct ObjectRow {
    pub name: String,
    /// The query string of its download link (`name=…`, encoded).
    pub query: String,
    pub size: u64,
    pub content_type: String,
    pub updated: String,
}

#[derive(Template)]
#[template(path = "console/bucket.html")]
struct BucketPage<'a> {
    stylesheet: &'a str,
    user: Option<&'a str>,
    csrf: &'a str,
    bucket: &'a str,
    project: &'a str,
    prefix: &'a str,
    objects: Vec<ObjectRow>,
    /// More objects than the page shows match the prefix.
    truncated: bool,
    may_upload: bool,
    script: &'a str,
}

#[derive(Deserialize)]
pub struct PrefixQuery {
    #[serde(default)]
    prefix: String,
}

fn name_query(name: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("name", name)
        .finish()
}

pub async fn bucket(
    State(state): State<AppState>,
    session: Session,
    Path(bucket): Path<String>,
    Query(q): Query<PrefixQuery>,
) -> Result<Response, PageError> {
    if q.prefix.contains('\0') {
        return Err(
            ApiError::InvalidArgument("A prefix cannot contain a NUL character".into()).into(),
        );
    }
    let record =
        authorized_bucket(&state, &session.principal, &bucket, "storage.objects.list").await?;
    let mut objects = state
        .store
        .list_objects(&bucket, &q.prefix, "", PAGE + 1)
        .await
        .map_err(ApiError::from)?;
    let truncated = objects.len() > PAGE;
    objects.truncate(PAGE);
    let objects = objects
        .into_iter()
        .map(|o| ObjectRow {
            query: name_query(&o.name),
            name: o.name,
            size: o.size,
            content_type: o.content_type,
            updated: time_util::rfc3339_seconds(o.update_time),
        })
        .collect();
    let may_upload = state
        .authorizer
        .holds(
            &session.principal,
            "storage.objects.create",
            &record.resource_name(),
        )
        .await?;
    let user = user_name(&session.principal);
    Ok(render(&BucketPage {
        stylesheet: STYLESHEET,
        user: Some(&user),
        csrf: &session.record.csrf_token,
        bucket: &record.name,
        project: record.project_id.as_str(),
        prefix: &q.prefix,
        objects,
        truncated,
        may_upload,
        script: super::SCRIPT,
    }))
}

#[derive(Deserialize)]
pub struct NameQuery {
    name: String,
}

/// RFC 5987's `attr-char`s are kept; everything else in a file name is percent-encoded.
const ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `Content-Disposition` for a download: the last segment of the object's name.
fn attachment(name: &str) -> HeaderValue {
    let file = name.rsplit('/').find(|s| !s.is_empty()).unwrap_or("object");
    let value = format!(
        "attachment; filename*=UTF-8''{}",
        utf8_percent_encode(file, ATTR_CHAR)
    );
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("attachment"))
}

pub async fn download(
    State(state): State<AppState>,
    session: Session,
    Path(bucket): Path<String>,
    Query(q): Query<NameQuery>,
) -> Result<Response, PageError> {
    let (object, bytes) =
        objects::read_for_console(&state, &session.principal, &bucket, &q.name).await?;
    let mut response = Response::new(Body::from_stream(bytes));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(CONTENT_DISPOSITION, attachment(&object.name));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(object.size));
    Ok(response)
}

/// The upload form's text fields, bounded; the file's size is bounded by the storage limits.
const FIELD_LIMIT: u64 = 4096;
/// What may arrive before the file's bytes start: the text fields, the parts' headers and
/// whatever precedes the first boundary, which multer would otherwise buffer without bound.
/// Room for a few of the server's largest body chunks (about 400 KiB each).
const HEAD_LIMIT: u64 = 1024 * 1024;

/// The request body, failing once more than [`HEAD_LIMIT`] bytes arrived before `in_file`.
fn bounded_head(
    body: Body,
    in_file: Arc<AtomicBool>,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let mut head: u64 = 0;
    body.into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        if !in_file.load(Ordering::Relaxed) {
            head = head.saturating_add(chunk.len() as u64);
            if head > HEAD_LIMIT {
                return Err(std::io::Error::other(format!(
                    "more than {HEAD_LIMIT} bytes came before the file"
                )));
            }
        }
        Ok(chunk)
    })
}

fn bad_form(e: multer::Error) -> PageError {
    ApiError::InvalidArgument(format!("The upload form could not be read: {e}")).into()
}

/// `multipart/form-data` with, in this order, `csrf`, `name` (the object's name; empty: the
/// file's) and `file`. The CSRF token is checked before a byte of the file is read, and the
/// file streams into the store as the API's uploads do.
pub async fn upload(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(bucket): Path<String>,
    body: Body,
) -> Result<Response, PageError> {
    check_origin(&state, &headers)?;
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        ApiError::InvalidArgument(
            "An upload is a multipart/form-data form with the fields csrf, name and file".into(),
        )
    })?;
    let constraints = multer::Constraints::new()
        .allowed_fields(vec!["csrf", "name", "file"])
        .size_limit(
            multer::SizeLimit::new()
                .for_field("csrf", FIELD_LIMIT)
                .for_field("name", FIELD_LIMIT),
        );
    let in_file = Arc::new(AtomicBool::new(false));
    let stream = bounded_head(body, Arc::clone(&in_file));
    let mut form = multer::Multipart::with_constraints(stream, boundary, constraints);
    let mut name = String::new();
    let mut csrf_checked = false;
    while let Some(field) = form.next_field().await.map_err(bad_form)? {
        match field.name() {
            Some("csrf") => {
                let sent = field.text().await.map_err(bad_form)?;
                check_csrf(&session, &sent)?;
                csrf_checked = true;
            }
            Some("name") => name = field.text().await.map_err(bad_form)?.trim().to_owned(),
            Some("file") => {
                if !csrf_checked {
                    // Never read a file before the form is known to be this session's.
                    check_csrf(&session, "")?;
                }
                in_file.store(true, Ordering::Relaxed);
                if name.is_empty() {
                    name = field.file_name().unwrap_or_default().to_owned();
                }
                if name.is_empty() {
                    return Err(ApiError::InvalidArgument(
                        "Choose a file to upload, or name the object".into(),
                    )
                    .into());
                }
                let content_type = field
                    .content_type()
                    .map(ToString::to_string)
                    .unwrap_or_else(|| "application/octet-stream".into());
                let bytes = field.map_err(std::io::Error::other);
                upload::upload_from_console(
                    &state,
                    &session.principal,
                    &bucket,
                    name,
                    content_type,
                    bytes,
                )
                .await?;
                let back = format!("/console/buckets/{bucket}");
                return Ok(Redirect::to(&back).into_response());
            }
            _ => {}
        }
    }
    Err(ApiError::InvalidArgument("The upload form had no file field".into()).into())
}
