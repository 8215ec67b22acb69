//! The console's pages. Each handler authorizes as the signed-in user through the API's
//! authorizer, then renders a template; a refusal renders the authorizer's own message.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_TYPE, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use cloister_domain::{Principal, ProjectId};
use cloister_store::ConsoleSession;
use serde::Deserialize;
use time::OffsetDateTime;

use super::STYLESHEET;
use super::session::{
    SESSION_LIFETIME, Session, check_csrf, check_origin, random_secret, secret_hash, set_cookie,
};
use crate::error::ApiError;
use crate::iam::projects::visible_projects;
use crate::state::AppState;

/// Why a page is not shown.
pub enum PageError {
    /// No live session: to the sign-in page.
    SignIn,
    /// A refused form (cross-site, or without this session's CSRF token).
    Forbidden(String),
    /// What the API would have answered, as a page.
    Api(ApiError),
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError::Api(e)
    }
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage<'a> {
    stylesheet: &'a str,
    user: Option<&'a str>,
    csrf: &'a str,
    title: &'a str,
    message: &'a str,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            PageError::SignIn => return Redirect::to("/console/login").into_response(),
            PageError::Forbidden(m) => (StatusCode::FORBIDDEN, "Refused", m),
            PageError::Api(e) => {
                let (status, code, _) = e.status();
                if status.is_server_error() {
                    tracing::error!(error = %e, "console page failed");
                }
                // As the API: a server error's detail stays in the server's log.
                (status, code, e.client_message())
            }
        };
        let page = ErrorPage {
            stylesheet: STYLESHEET,
            user: None,
            csrf: "",
            title,
            message: &message,
        };
        (status, render(&page)).into_response()
    }
}

pub(super) fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

pub async fn stylesheet() -> Response {
    (
        [(CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../assets/console/console.css"),
    )
        .into_response()
}

pub async fn script() -> Response {
    (
        [(CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../assets/console/console.js"),
    )
        .into_response()
}

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage<'a> {
    stylesheet: &'a str,
    user: Option<&'a str>,
    csrf: &'a str,
    code: &'a str,
    /// Whom the prefilled code signs in, said before the button is pressed.
    signs_in: Option<&'a str>,
    refusal: Option<&'a str>,
}

#[derive(Deserialize)]
pub struct CodeQuery {
    #[serde(default)]
    code: String,
}

/// The sign-in form, the code filled in from the link `console-login` printed. Signing in
/// takes a click (a POST): a link alone changes nothing.
pub async fn login_form(
    State(state): State<AppState>,
    Query(q): Query<CodeQuery>,
) -> Result<Response, PageError> {
    let code = q.code.trim();
    let signs_in = if code.is_empty() {
        None
    } else {
        state
            .store
            .console_login_code_user(&secret_hash(code), OffsetDateTime::now_utc())
            .await
            .map_err(ApiError::from)?
    };
    Ok(render(&LoginPage {
        stylesheet: STYLESHEET,
        user: None,
        csrf: "",
        code: &q.code,
        signs_in: signs_in.as_deref(),
        refusal: None,
    }))
}

pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<CodeQuery>,
) -> Result<Response, PageError> {
    check_origin(&state, &headers)?;
    let now = OffsetDateTime::now_utc();
    let Some(email) = state
        .store
        .take_console_login_code(&secret_hash(form.code.trim()), now)
        .await
        .map_err(ApiError::from)?
    else {
        let page = LoginPage {
            stylesheet: STYLESHEET,
            user: None,
            csrf: "",
            code: "",
            signs_in: None,
            refusal: Some(
                "That code is unknown, used or expired (codes work once, for five minutes). Run `cloister auth console-login` for a new one.",
            ),
        };
        return Ok((StatusCode::UNAUTHORIZED, render(&page)).into_response());
    };
    let id = random_secret();
    let session = ConsoleSession {
        id_hash: secret_hash(&id),
        email,
        csrf_token: random_secret(),
        create_time: now,
        expire_time: now + SESSION_LIFETIME,
    };
    state
        .store
        .create_console_session(&session)
        .await
        .map_err(ApiError::from)?;
    let mut response = Redirect::to("/console/").into_response();
    response
        .headers_mut()
        .insert(SET_COOKIE, set_cookie(&state, Some(&id)));
    Ok(response)
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    check_origin(&state, &headers)?;
    check_csrf(&session, &form.csrf)?;
    state
        .store
        .delete_console_session(&session.record.id_hash)
        .await
        .map_err(ApiError::from)?;
    let mut response = Redirect::to("/console/login").into_response();
    response
        .headers_mut()
        .insert(SET_COOKIE, set_cookie(&state, None));
    Ok(response)
}

struct ProjectRow {
    id: String,
    number: String,
    name: String,
}

#[derive(Template)]
#[template(path = "console/home.html")]
struct HomePage<'a> {
    stylesheet: &'a str,
    user: Option<&'a str>,
    csrf: &'a str,
    projects: Vec<ProjectRow>,
}

/// The projects the user may see (`resourcemanager.projects.get`), as `projects list` shows.
pub async fn home(State(state): State<AppState>, session: Session) -> Result<Response, PageError> {
    let projects = visible_projects(&state, &session.principal)
        .await?
        .into_iter()
        .map(|p| ProjectRow {
            id: p.id.as_str().to_owned(),
            number: p.number.to_string(),
            name: p.display_name,
        })
        .collect();
    let user = user_name(&session.principal);
    Ok(render(&HomePage {
        stylesheet: STYLESHEET,
        user: Some(&user),
        csrf: &session.record.csrf_token,
        projects,
    }))
}

struct BindingRow {
    role: String,
    members: Vec<String>,
}

/// A project's IAM policy as read, for whoever may read it.
struct PolicyView {
    /// The policy's version as read: a change made from this page is refused if it moved.
    etag: String,
    bindings: Vec<BindingRow>,
}

#[derive(Template)]
#[template(path = "console/project.html")]
struct ProjectPage<'a> {
    stylesheet: &'a str,
    user: Option<&'a str>,
    csrf: &'a str,
    project: &'a str,
    /// `None` when the user may not read the project's policy.
    policy: Option<PolicyView>,
    /// `None` when the user may not list the project's instances.
    instances: Option<Vec<super::instances::InstanceRow>>,
    resources: super::resources::ProjectResources,
}

/// A project, for whoever may see it (`resourcemanager.projects.get`, as `projects describe`):
/// its IAM policy, instances, service accounts, pools, buckets, keys and repositories, each
/// section shown to whoever may read or list it.
pub async fn project(
    State(state): State<AppState>,
    session: Session,
    Path(project): Path<String>,
) -> Result<Response, PageError> {
    let id = ProjectId::parse(&project)
        .map_err(|e| ApiError::InvalidArgument(format!("{project:?} is not a project id: {e}")))?;
    let resource = id.resource_name();
    state
        .authorizer
        .check(
            &session.principal,
            "resourcemanager.projects.get",
            &resource,
        )
        .await?;
    let read_policy = "resourcemanager.projects.getIamPolicy";
    let policy = if super::resources::may(&state, &session, read_policy, &resource).await? {
        let (policy, _) = state
            .store
            .get_policy(&resource)
            .await
            .map_err(ApiError::from)?;
        Some(PolicyView {
            etag: policy.etag,
            bindings: policy
                .bindings
                .into_iter()
                .map(|b| BindingRow {
                    role: b.role,
                    members: b.members.iter().map(ToString::to_string).collect(),
                })
                .collect(),
        })
    } else {
        None
    };
    let instances = super::instances::rows(&state, &session, &id).await?;
    let resources = super::resources::gather(&state, &session, &id).await?;
    let user = user_name(&session.principal);
    Ok(render(&ProjectPage {
        stylesheet: STYLESHEET,
        user: Some(&user),
        csrf: &session.record.csrf_token,
        project: id.as_str(),
        policy,
        instances,
        resources,
    }))
}

pub(super) fn user_name(p: &Principal) -> String {
    match p {
        Principal::User(email) => email.as_str().to_owned(),
        other => other.to_string(),
    }
}

#[derive(Deserialize)]
pub struct BindingForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    etag: String,
    /// `add` or `remove`.
    #[serde(default)]
    change: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    member: String,
}

/// Adds or removes one member of one role on the project's policy, through the API's own
/// `setIamPolicy` (permission, validation, an owner kept, audit), carrying the etag the page
/// showed so a concurrent change is refused rather than overwritten.
pub async fn change_binding(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(project): Path<String>,
    Form(form): Form<BindingForm>,
) -> Result<Response, PageError> {
    check_origin(&state, &headers)?;
    check_csrf(&session, &form.csrf)?;
    let id = ProjectId::parse(&project)
        .map_err(|e| ApiError::InvalidArgument(format!("{project:?} is not a project id: {e}")))?;
    let resource = id.resource_name();
    let (role, member) = (form.role.trim(), form.member.trim());
    if role.is_empty() || member.is_empty() {
        return Err(ApiError::InvalidArgument(
            "Name a role (roles/viewer) and a member (user:alice@example.com)".into(),
        )
        .into());
    }
    // Authorized before the policy is read: a stranger's "no such binding" would tell them
    // who holds which role on another's project.
    let permission = "resourcemanager.projects.setIamPolicy";
    state
        .authorizer
        .check(&session.principal, permission, &resource)
        .await?;
    let (policy, _) = state
        .store
        .get_policy(&resource)
        .await
        .map_err(ApiError::from)?;
    // Edited as JSON so the member is parsed (and refused clearly) by setIamPolicy itself.
    let mut bindings: Vec<serde_json::Value> = policy
        .bindings
        .iter()
        .map(|b| {
            serde_json::json!({
                "role": b.role,
                "members": b.members.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })
        })
        .collect();
    match form.change.as_str() {
        "add" => match bindings.iter_mut().find(|b| b["role"] == role) {
            Some(b) => {
                if let Some(members) = b["members"].as_array_mut()
                    && !members.iter().any(|m| m == member)
                {
                    members.push(member.into());
                }
            }
            None => bindings.push(serde_json::json!({"role": role, "members": [member]})),
        },
        "remove" => {
            let mut found = false;
            for b in &mut bindings {
                if b["role"] == role
                    && let Some(members) = b["members"].as_array_mut()
                {
                    let before = members.len();
                    members.retain(|m| m != member);
                    found |= members.len() != before;
                }
            }
            if !found {
                return Err(ApiError::InvalidArgument(format!(
                    "{member} has no binding to {role} on {}; nothing was changed",
                    id.as_str()
                ))
                .into());
            }
            bindings.retain(|b| b["members"].as_array().is_some_and(|m| !m.is_empty()));
        }
        other => {
            return Err(ApiError::InvalidArgument(format!(
                "change {other:?} must be add or remove"
            ))
            .into());
        }
    }
    let body = serde_json::json!({"policy": {"bindings": bindings, "etag": form.etag}});
    let rules = crate::iam::policy_api::Rules {
        permission,
        keep_an_owner: true,
    };
    let _stored =
        crate::iam::policy_api::set(&state, &session.principal, &resource, rules, body).await?;
    Ok(Redirect::to(&format!("/console/projects/{}", id.as_str())).into_response())
}
