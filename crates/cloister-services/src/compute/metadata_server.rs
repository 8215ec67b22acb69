//! The per-instance metadata server, answering as GCE's does, because Google's client
//! libraries (google-auth, cloud.google.com/go/compute/metadata, google-auth-library-java)
//! decide from these answers whether they run on GCE and which account they act as:
//! - `GET /` answers `computeMetadata/` with `Metadata-Flavor: Google` and needs no request
//!   header: it is the probe the libraries send (the Go one sends no header at all);
//! - everything else needs `Metadata-Flavor: Google` (so a page in a browser, which cannot set
//!   it, cannot read tokens); the legacy `X-Google-Metadata-Request` header alone is refused,
//!   as GCE refuses it since its legacy endpoints were shut down, and a request carrying
//!   `X-Forwarded-For` (a proxy relaying someone else's request) is refused outright;
//! - a directory named without its trailing slash is a 301 to the slashed name, as on GCE;
//! - the values and their forms are `metadata_tree.rs`'s.
//!
//! Tokens are the instance service account's: the instance was allowed to act as it when it
//! was created (`iam.serviceAccounts.actAs`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use cloister_domain::{Email, Principal};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::metadata_tree::{self, Dynamic, Node};
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
    /// Unix seconds, for the `format=full` ID token's `instance_creation_timestamp`.
    pub create_time: i64,
}

#[derive(Clone)]
struct Served {
    state: AppState,
    instance: Arc<InstanceInfo>,
    /// `/` → `computeMetadata/` → `v1/` → the instance's tree. Built once: an instance's
    /// metadata does not change while it runs.
    root: Arc<Node>,
}

/// How long `wait_for_change` holds a request whose value has not changed (always, here: the
/// metadata is fixed for the instance's life) when it names no shorter `timeout_sec`. GCE
/// would hold it until a change; a bound keeps a forgotten watcher from holding one of the
/// instance's forwarded connections forever, and a watcher simply asks again.
const MAX_WAIT_SECS: u64 = 300;

pub fn router(state: AppState, instance: InstanceInfo) -> Router {
    let root = Node::Dir(vec![metadata_tree::dir_entry(
        "computeMetadata",
        Node::Dir(vec![metadata_tree::dir_entry(
            "v1",
            metadata_tree::tree(&instance),
        )]),
    )]);
    Router::new().fallback(serve).with_state(Served {
        state,
        instance: Arc::new(instance),
        root: Arc::new(root),
    })
}

/// A response with the headers every GCE metadata answer carries.
fn answer(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let etag = (status == StatusCode::OK).then(|| hex::encode(&Sha256::digest(&body)[..8]));
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert("metadata-flavor", HeaderValue::from_static("Google"));
    h.insert(
        header::SERVER,
        HeaderValue::from_static("Metadata Server for VM"),
    );
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert("x-xss-protection", HeaderValue::from_static("0"));
    h.insert("x-frame-options", HeaderValue::from_static("SAMEORIGIN"));
    if let Some(etag) = etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
        h.insert(header::ETAG, etag);
    }
    r
}

fn text(body: String) -> Response {
    answer(StatusCode::OK, "application/text", body)
}

fn json_answer(v: Value) -> Response {
    answer(StatusCode::OK, "application/json", v.to_string())
}

/// GCE's error pages are Google's HTML error page; clients read the status, people the text.
fn error_page(status: StatusCode, detail: String) -> Response {
    let code = status.as_u16();
    let reason = status.canonical_reason().unwrap_or("Error");
    let body = format!(
        "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <title>Error {code} ({reason})!!1</title>\n  <p><b>{code}.</b> <ins>That’s an error.</ins>\n  <p>{detail}  <ins>That’s all we know.</ins>\n"
    );
    answer(status, "text/html; charset=UTF-8", body)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn not_found(path: &str) -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        format!(
            "The requested URL <code>{}</code> was not found on this server.",
            html_escape(path)
        ),
    )
}

fn forbidden(path: &str, why: &str) -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        format!(
            "Your client does not have permission to get URL <code>{}</code> from this server. {why}",
            html_escape(path)
        ),
    )
}

fn bad_request(why: &str) -> Response {
    answer(
        StatusCode::BAD_REQUEST,
        "application/text",
        format!("{why}\n"),
    )
}

/// The query parameters GCE's metadata server reads; others are ignored, as GCE ignores them.
#[derive(Default)]
struct Params {
    recursive: bool,
    alt: Option<String>,
    audience: Option<String>,
    format: Option<String>,
    wait_for_change: bool,
    last_etag: Option<String>,
    timeout_sec: Option<String>,
}

fn params(query: Option<&str>) -> Params {
    let mut p = Params::default();
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let v = v.into_owned();
        match k.as_ref() {
            "recursive" => p.recursive = v.eq_ignore_ascii_case("true"),
            "alt" => p.alt = Some(v),
            "audience" => p.audience = Some(v),
            "format" => p.format = Some(v),
            "wait_for_change" => p.wait_for_change = v.eq_ignore_ascii_case("true"),
            "last_etag" => p.last_etag = Some(v),
            "timeout_sec" => p.timeout_sec = Some(v),
            // `scopes` on a token request: a Cloister token carries no scopes (IAM alone
            // decides what it may do), so any requested scopes are what it already is.
            _ => {}
        }
    }
    p
}

/// `%40` and friends in a path segment (an account's email may come encoded).
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

async fn serve(State(s): State<Served>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    if headers.contains_key("x-forwarded-for") {
        return forbidden(path, "Requests relayed through a proxy are refused.");
    }
    if method != Method::GET && method != Method::HEAD {
        return error_page(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "The method {method} is not allowed for this URL; the metadata server answers GET."
            ),
        );
    }
    if path != "/" && headers.get("metadata-flavor").map(HeaderValue::as_bytes) != Some(b"Google") {
        let why = if headers.contains_key("x-google-metadata-request") {
            "Missing Metadata-Flavor:Google header. The legacy X-Google-Metadata-Request header is no longer accepted."
        } else {
            "Missing Metadata-Flavor:Google header."
        };
        return forbidden(path, why);
    }
    let is_dir_form = path.ends_with('/');
    let mut segments = Vec::new();
    for raw in path.trim_start_matches('/').split('/') {
        let Some(segment) = percent_decode(raw) else {
            return not_found(path);
        };
        segments.push(segment);
    }
    if is_dir_form {
        segments.pop();
    }
    if segments.iter().any(String::is_empty) {
        return not_found(path);
    }
    let names: Vec<&str> = segments.iter().map(String::as_str).collect();
    let Some(node) = s.root.lookup(&names) else {
        return not_found(path);
    };
    match (node.is_dir(), is_dir_form) {
        (true, false) => return redirect(&headers, &uri),
        (false, true) => return not_found(path),
        _ => {}
    }
    let p = params(uri.query());
    let response = match node {
        Node::Dynamic(Dynamic::Token) => return token(&s),
        Node::Dynamic(Dynamic::Identity) => return identity(&s, &p).await,
        node => render(node, &p),
    };
    if p.wait_for_change && response.status() == StatusCode::OK {
        return wait_for_change(&p, response).await;
    }
    response
}

/// The directory's slashed URL, with the query kept (Google's clients follow it).
fn redirect(headers: &HeaderMap, uri: &Uri) -> Response {
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let target = format!("{}/{query}", uri.path());
    let location = match headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
        Some(host) => format!("http://{host}{target}"),
        None => target.clone(),
    };
    let mut r = answer(
        StatusCode::MOVED_PERMANENTLY,
        "text/html",
        format!("{}/\n", html_escape(uri.path())),
    );
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn render(node: &Node, p: &Params) -> Response {
    let json = match p.alt.as_deref() {
        None => node.is_dir() && p.recursive,
        Some("json") => true,
        Some("text") => false,
        Some(other) => {
            return bad_request(&format!("Invalid alt value {other:?}: use json or text"));
        }
    };
    match (node.is_dir(), p.recursive, json) {
        (true, true, true) => json_answer(node.json()),
        (true, true, false) => text(node.recursive_text()),
        (true, false, true) => json_answer(json!(node.names())),
        (true, false, false) => text(node.names().iter().map(|n| format!("{n}\n")).collect()),
        (false, _, true) => json_answer(node.json()),
        (false, _, false) => text(node.text()),
    }
}

/// `wait_for_change=true`: an answer whose ETag differs from `last_etag` comes at once; an
/// unchanged one after the timeout, unchanged (nothing here changes while the instance runs).
async fn wait_for_change(p: &Params, response: Response) -> Response {
    let secs = match p.timeout_sec.as_deref().map(str::parse::<u64>) {
        None => MAX_WAIT_SECS,
        Some(Ok(n)) if n > 0 => n.min(MAX_WAIT_SECS),
        Some(_) => return bad_request("timeout_sec must be a positive whole number of seconds"),
    };
    let current = response
        .headers()
        .get(header::ETAG)
        .and_then(|e| e.to_str().ok());
    let changed = match (&p.last_etag, current) {
        (Some(last), Some(now)) => last != now,
        _ => false,
    };
    if !changed {
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }
    response
}

fn token(s: &Served) -> Response {
    let principal = Principal::ServiceAccount(s.instance.service_account.clone());
    let (token, exp) = s.state.tokens.issue(&principal);
    let expires_in = exp - crate::time_util::now_unix();
    json_answer(json!({"access_token": token, "expires_in": expires_in, "token_type": "Bearer"}))
}

/// `identity?audience=…[&format=standard|full]`: `full` adds the email and the
/// `google.compute_engine` block naming this instance, as on GCE.
async fn identity(s: &Served, p: &Params) -> Response {
    let Some(audience) = p.audience.as_deref().filter(|a| !a.is_empty()) else {
        return bad_request("non-empty audience parameter required");
    };
    let full = match p.format.as_deref() {
        None | Some("standard") => false,
        Some("full") => true,
        Some(other) => {
            return bad_request(&format!(
                "Invalid format value {other:?}: use standard or full"
            ));
        }
    };
    let i = &s.instance;
    let google = full.then(|| {
        json!({"compute_engine": {
            "instance_creation_timestamp": i.create_time,
            "instance_id": i.id.to_string(),
            "instance_name": i.name,
            "project_id": i.project_id,
            "project_number": i.project_number,
            "zone": i.zone,
        }})
    });
    match crate::iamcredentials::id_token(&s.state, &i.service_account, audience, full, google)
        .await
    {
        Ok(t) => text(t),
        // The account was disabled or deleted since the instance started: say so, with the
        // status the API would give. Internal details stay in the log.
        Err(e) => {
            let (status, _, _) = e.status();
            let detail = if status == StatusCode::INTERNAL_SERVER_ERROR {
                tracing::error!(error = %e, "metadata server: an ID token failed");
                "internal error".to_owned()
            } else {
                e.to_string()
            };
            answer(status, "application/text", format!("{detail}\n"))
        }
    }
}
