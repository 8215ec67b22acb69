//! The console: Cloister's web interface, served by the server itself at `/console/`.
//!
//! Server-rendered HTML (askama templates compiled into the binary, escaping every value), one
//! stylesheet and one small script of our own (following a running instance's serial console)
//! embedded under a versioned path; the Content-Security-Policy allows no other script, none
//! inline. Every page works without script. Every page authorizes through the same
//! [`crate::iam::authorizer`] as the API, as the signed-in user, so a page shows exactly what
//! that user's API calls would, and every decision is in the audit log.

mod audit_page;
mod buckets;
mod instances;
mod pages;
mod providers;
mod repositories;
mod resources;
mod session;
mod trust;

use axum::Router;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{Redirect, Response};
use axum::routing::{get, post};

use crate::state::AppState;

/// The stylesheet's path: versioned, so a new release is never served an old cached copy.
pub const STYLESHEET: &str = concat!(
    "/console/static/",
    env!("CARGO_PKG_VERSION"),
    "/console.css"
);

/// The one script: follows a running instance's serial console and shows an upload's
/// progress. Versioned as the stylesheet.
pub const SCRIPT: &str = concat!("/console/static/", env!("CARGO_PKG_VERSION"), "/console.js");

/// No inline script, no framing, no third-party origin: styles, images, scripts and fetches
/// from this server only, forms only back to it.
const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; \
                   img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const PROVIDER: &str = "/console/projects/{project}/locations/{location}/workloadIdentityPools/{pool}/providers/{provider}";

pub fn router() -> Router<AppState> {
    let pages = Router::new()
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(pages::home))
        .route("/console/login", get(pages::login_form).post(pages::login))
        .route("/console/logout", post(pages::logout))
        .route("/console/projects/{project}", get(pages::project))
        .route(
            "/console/projects/{project}/iam",
            post(pages::change_binding),
        )
        .route(
            "/console/projects/{project}/zones/{zone}/instances/{name}",
            get(instances::instance),
        )
        .route(
            "/console/projects/{project}/zones/{zone}/instances/{name}/trust",
            get(trust::trust_chain),
        )
        .route("/console/buckets/{bucket}", get(buckets::bucket))
        .route("/console/buckets/{bucket}/download", get(buckets::download))
        .route("/console/buckets/{bucket}/upload", post(buckets::upload))
        .route(
            "/console/projects/{project}/locations/{location}/repositories/{repository}",
            get(repositories::repository),
        )
        .route(PROVIDER, get(providers::provider))
        .route(&format!("{PROVIDER}/evaluate"), post(providers::evaluate))
        .route(&format!("{PROVIDER}/save"), post(providers::save))
        .route("/console/audit", get(audit_page::list))
        .route("/console/audit/{id}", get(audit_page::entry))
        .route("/console/audit/export/{format}", get(audit_page::export))
        .route(
            "/console/projects/{project}/zones/{zone}/instances/{name}/serial",
            get(instances::serial),
        )
        .route(STYLESHEET, get(pages::stylesheet))
        .route(SCRIPT, get(pages::script))
        .layer(middleware::from_fn(security_headers));
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route(
            "/console/v1/loginCodes",
            post(session_api::create_login_code),
        )
        .merge(pages)
}

/// The headers every console response carries.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // Not `no-referrer`: under it browsers send `Origin: null` with forms, and the Origin
        // check needs the real one (found by the Chromium test).
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

mod session_api {
    //! `POST /console/v1/loginCodes`: the CLI, signed in with its credentials, asks for a
    //! one-time code that signs its user in to the console.

    use axum::Json;
    use axum::extract::State;
    use cloister_domain::Principal;
    use serde_json::{Value, json};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    use super::session::{CODE_LIFETIME, random_secret, secret_hash};
    use crate::auth::Caller;
    use crate::error::ApiError;
    use crate::state::AppState;

    pub async fn create_login_code(
        State(state): State<AppState>,
        Caller(caller): Caller,
    ) -> Result<Json<Value>, ApiError> {
        let Principal::User(email) = &caller else {
            return Err(ApiError::PermissionDenied {
                message: format!(
                    "The console signs in people: {caller} is not a user. Run `cloister auth console-login` with a user's profile."
                ),
                permission: "cloister.console.login".into(),
                resource: "console".into(),
            });
        };
        let now = OffsetDateTime::now_utc();
        state.store.sweep_console(now).await?;
        let code = random_secret();
        let expire_time = now + CODE_LIFETIME;
        state
            .store
            .create_console_login_code(&secret_hash(&code), email.as_str(), expire_time)
            .await?;
        let url = format!(
            "{}/console/login?code={code}",
            state.public_url.trim_end_matches('/')
        );
        Ok(Json(json!({
            "code": code,
            "url": url,
            "expireTime": expire_time.format(&Rfc3339).unwrap_or_default(),
        })))
    }
}
