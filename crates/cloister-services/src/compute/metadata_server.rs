//! The per-instance metadata server, with GCE's paths under `/computeMetadata/v1/` and GCE's
//! rule that every request carries `Metadata-Flavor: Google` (so a page in a browser cannot
//! be tricked into reading it). Tokens are the instance service account's: the instance was
//! allowed to act as it when it was created (`iam.serviceAccounts.actAs`).

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cloister_domain::{Email, Principal};
use serde::Deserialize;
use serde_json::json;

use crate::state::AppState;

#[derive(Clone)]
pub struct InstanceInfo {
    pub project_id: String,
    pub project_number: u64,
    pub zone: String,
    pub name: String,
    pub id: u64,
    pub service_account: Email,
    pub attributes: BTreeMap<String, String>,
}

#[derive(Clone)]
struct Served {
    state: AppState,
    instance: InstanceInfo,
}

pub fn router(state: AppState, instance: InstanceInfo) -> Router {
    Router::new()
        .route("/computeMetadata/v1/{*path}", get(serve))
        .route("/", get(|| async { flavored("computeMetadata/\n".into()) }))
        .with_state(Served { state, instance })
}

fn flavored(body: String) -> Response {
    let mut r = body.into_response();
    r.headers_mut()
        .insert("metadata-flavor", HeaderValue::from_static("Google"));
    r
}

fn not_found(path: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        format!("no metadata at /computeMetadata/v1/{path}\n"),
    )
        .into_response()
}

#[derive(Deserialize, Default)]
struct MetadataQuery {
    recursive: Option<String>,
    audience: Option<String>,
    format: Option<String>,
}

async fn serve(
    State(s): State<Served>,
    Path(path): Path<String>,
    Query(q): Query<MetadataQuery>,
    headers: HeaderMap,
) -> Response {
    if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        return (
            StatusCode::FORBIDDEN,
            "Missing Metadata-Flavor:Google header.\n",
        )
            .into_response();
    }
    let i = &s.instance;
    let account = i.service_account.as_str().to_owned();
    let path = path.trim_end_matches('/');
    match path {
        "project/project-id" => flavored(i.project_id.clone()),
        "project/numeric-project-id" => flavored(i.project_number.to_string()),
        "instance/id" => flavored(i.id.to_string()),
        "instance/name" | "instance/hostname" => flavored(i.name.clone()),
        "instance/zone" => flavored(format!("projects/{}/zones/{}", i.project_number, i.zone)),
        "instance/attributes" if q.recursive.as_deref() == Some("true") => {
            flavored(json!(i.attributes).to_string())
        }
        "instance/attributes" => flavored(i.attributes.keys().map(|k| format!("{k}\n")).collect()),
        "instance/service-accounts" => flavored(format!("default/\n{account}/\n")),
        _ => {
            if let Some(key) = path.strip_prefix("instance/attributes/") {
                return match i.attributes.get(key) {
                    Some(v) => flavored(v.clone()),
                    None => not_found(path),
                };
            }
            let Some(rest) = path.strip_prefix("instance/service-accounts/") else {
                return not_found(path);
            };
            let (who, what) = rest.split_once('/').unwrap_or((rest, ""));
            if who != "default" && who != account {
                return not_found(path);
            }
            match what {
                "email" => flavored(account),
                "scopes" => flavored("https://www.googleapis.com/auth/cloud-platform\n".into()),
                "token" => {
                    let (token, exp) = s
                        .state
                        .tokens
                        .issue(&Principal::ServiceAccount(i.service_account.clone()));
                    let expires_in = exp - crate::time_util::now_unix();
                    flavored(json!({"access_token": token, "expires_in": expires_in, "token_type": "Bearer"}).to_string())
                }
                "identity" => {
                    let Some(audience) = q.audience.filter(|a| !a.is_empty()) else {
                        return (
                            StatusCode::BAD_REQUEST,
                            "non-empty audience parameter required\n",
                        )
                            .into_response();
                    };
                    let full = q.format.as_deref() == Some("full");
                    match crate::iamcredentials::id_token(
                        &s.state,
                        &i.service_account,
                        &audience,
                        full,
                    )
                    .await
                    {
                        Ok(t) => flavored(t),
                        Err(e) => {
                            (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response()
                        }
                    }
                }
                _ => not_found(path),
            }
        }
    }
}
