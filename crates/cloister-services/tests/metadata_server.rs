//! The instance metadata server answers every path Google's clients read (google-auth, the Go
//! and Java metadata clients) with GCE's shapes: one case per path, through the same router
//! the local driver serves on an instance's metadata socket, on a real server's state (its
//! tokens are checked by the API's own verifier, its ID tokens by their claims).

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use cloister_services::compute::metadata_server::{InstanceInfo, router};
use serde_json::{Value, json};
use support::Api;
use tower::ServiceExt;

const SA: &str = "workload-sa@secundus-bank.iam.gserviceaccount.com";
const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
const ID: u64 = 4_815_162_342_108_000_000;

/// Which metadata headers a request carries.
#[derive(Clone, Copy, Debug)]
enum Headers {
    Flavor,
    NoHeader,
    /// Only the legacy `X-Google-Metadata-Request: True`.
    Legacy,
    /// `Metadata-Flavor` with another value.
    WrongFlavor,
    /// `Metadata-Flavor: Google` relayed by a proxy (`X-Forwarded-For`).
    Forwarded,
}

#[derive(Debug)]
enum Expect {
    /// 200, `application/text`, exactly this body.
    Text(String),
    /// 200, `application/json`, exactly this value.
    Json(Value),
    /// 301 to this Location.
    Redirect(&'static str),
    /// GCE's HTML error page with this status, containing this text.
    Page(u16, &'static str),
    /// A plain-text refusal with this status, containing this text.
    Refusal(u16, &'static str),
    /// 200 JSON `{access_token, expires_in, token_type}`; the token is the account's.
    AccessToken,
    /// 200 text: an ID token for `https://workload.test`, with GCE's `format=full` claims or not.
    IdToken { full: bool },
}

struct World {
    api: Api,
    number: String,
    router: axum::Router,
}

async fn world() -> World {
    let api = Api::start().await;
    let alice = api.user("alice@example.com").await;
    let (s, op) = api
        .call(
            &alice,
            "POST",
            "/v1/projects",
            Some(json!({"projectId": "secundus-bank"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{op}");
    let number = op["response"]["projectNumber"].as_str().unwrap().to_owned();
    let (s, b) = api
        .call(
            &alice,
            "POST",
            "/v1/projects/secundus-bank/serviceAccounts",
            Some(json!({"accountId": "workload-sa"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let info = InstanceInfo {
        project_id: "secundus-bank".into(),
        project_number: number.parse().unwrap(),
        zone: "us-west1-b".into(),
        name: "workload-vm".into(),
        id: ID,
        service_account: cloister_domain::Email::parse(SA).unwrap(),
        attributes: BTreeMap::from([
            ("tee-image-reference".into(), "registry.test/w:1".into()),
            ("tee-restart-policy".into(), "Never".into()),
        ]),
        create_time: 1_700_000_000,
    };
    let router = router(api.server.state.clone(), info);
    World {
        api,
        number,
        router,
    }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn get(router: &axum::Router, path: &str, headers: Headers) -> Answer {
    let mut req = Request::get(path).header("host", "metadata.google.internal");
    req = match headers {
        Headers::Flavor => req.header("metadata-flavor", "Google"),
        Headers::NoHeader => req,
        Headers::Legacy => req.header("x-google-metadata-request", "True"),
        Headers::WrongFlavor => req.header("metadata-flavor", "google"),
        Headers::Forwarded => req
            .header("metadata-flavor", "Google")
            .header("x-forwarded-for", "203.0.113.7"),
    };
    let resp = router
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

fn header<'a>(a: &'a Answer, name: &str) -> &'a str {
    a.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT has three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn every_path_googles_clients_read_has_gces_shape() {
    let w = world().await;
    let n = w.number.as_str();
    let v1 = "/computeMetadata/v1";
    let account = json!({"aliases": ["default"], "email": SA, "scopes": [CLOUD_PLATFORM]});
    let attributes =
        json!({"tee-image-reference": "registry.test/w:1", "tee-restart-policy": "Never"});
    // The sandbox's one interface is the workload's loopback; it has no external address.
    let interface = json!({
        "accessConfigs": [],
        "ip": "127.0.0.1",
        "mac": "00:00:00:00:00:00",
        "mtu": 65536,
        "network": format!("projects/{n}/networks/cloister-sandbox"),
        "subnetmask": "255.0.0.0",
    });
    let instance = json!({
        "attributes": attributes,
        "hostname": "workload-vm.us-west1-b.c.secundus-bank.internal",
        "id": ID,
        "machineType": format!("projects/{n}/machineTypes/cloister-local"),
        "name": "workload-vm",
        "networkInterfaces": [interface],
        "serviceAccounts": {"default": account, SA: account},
        "tags": [],
        "zone": format!("projects/{n}/zones/us-west1-b"),
    });
    let project = json!({"attributes": {}, "numericProjectId": n.parse::<u64>().unwrap(), "projectId": "secundus-bank"});
    use Expect::*;
    use Headers::*;
    let text = |s: &str| Text(s.to_owned());
    let cases: Vec<(String, Headers, Expect)> = vec![
        // Detection: google-auth and Java probe `/` with the header, Go without it.
        ("/".into(), Flavor, text("computeMetadata/\n")),
        ("/".into(), NoHeader, text("computeMetadata/\n")),
        ("/computeMetadata/".into(), Flavor, text("v1/\n")),
        (
            format!("{v1}/"),
            Flavor,
            text("instance/\nproject/\nuniverse/\n"),
        ),
        (
            v1.to_owned(),
            Flavor,
            Redirect("http://metadata.google.internal/computeMetadata/v1/"),
        ),
        (
            format!("{v1}/?recursive=true"),
            Flavor,
            Json(
                json!({"instance": instance, "project": project, "universe": {"universeDomain": "googleapis.com"}}),
            ),
        ),
        (
            format!("{v1}/instance/"),
            Flavor,
            text(
                "attributes/\nhostname\nid\nmachine-type\nname\nnetwork-interfaces/\nservice-accounts/\ntags\nzone\n",
            ),
        ),
        (
            format!("{v1}/instance/?recursive=true"),
            Flavor,
            Json(instance.clone()),
        ),
        // The service accounts, by alias and by email, listed and recursive.
        (
            format!("{v1}/instance/service-accounts/"),
            Flavor,
            Text(format!("default/\n{SA}/\n")),
        ),
        (
            format!("{v1}/instance/service-accounts/?recursive=true"),
            Flavor,
            Json(json!({"default": account, SA: account})),
        ),
        (
            format!("{v1}/instance/service-accounts/default/"),
            Flavor,
            text("aliases\nemail\nidentity\nscopes\ntoken\n"),
        ),
        (
            format!("{v1}/instance/service-accounts/default/?recursive=true"),
            Flavor,
            Json(account.clone()),
        ),
        (
            format!("{v1}/instance/service-accounts/{SA}/?recursive=true"),
            Flavor,
            Json(account.clone()),
        ),
        (
            format!("{v1}/instance/service-accounts/default?recursive=true"),
            Flavor,
            Redirect(
                "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/?recursive=true",
            ),
        ),
        (
            format!("{v1}/instance/service-accounts/default/aliases"),
            Flavor,
            text("default\n"),
        ),
        (
            format!("{v1}/instance/service-accounts/default/email"),
            Flavor,
            text(SA),
        ),
        (
            format!("{v1}/instance/service-accounts/{SA}/email"),
            Flavor,
            text(SA),
        ),
        (
            format!(
                "{v1}/instance/service-accounts/workload-sa%40secundus-bank.iam.gserviceaccount.com/email"
            ),
            Flavor,
            text(SA),
        ),
        (
            format!("{v1}/instance/service-accounts/default/scopes"),
            Flavor,
            Text(format!("{CLOUD_PLATFORM}\n")),
        ),
        (
            format!("{v1}/instance/service-accounts/default/scopes?alt=json"),
            Flavor,
            Json(json!([CLOUD_PLATFORM])),
        ),
        (
            format!(
                "{v1}/instance/service-accounts/other@secundus-bank.iam.gserviceaccount.com/email"
            ),
            Flavor,
            Page(404, "was not found on this server"),
        ),
        // Tokens: access (with google-auth's ?scopes=), ID in both formats.
        (
            format!("{v1}/instance/service-accounts/default/token"),
            Flavor,
            AccessToken,
        ),
        (
            format!(
                "{v1}/instance/service-accounts/default/token?scopes={CLOUD_PLATFORM},https://www.googleapis.com/auth/userinfo.email"
            ),
            Flavor,
            AccessToken,
        ),
        (
            format!("{v1}/instance/service-accounts/{SA}/token"),
            Flavor,
            AccessToken,
        ),
        (
            format!(
                "{v1}/instance/service-accounts/default/identity?audience=https://workload.test&format=full"
            ),
            Flavor,
            IdToken { full: true },
        ),
        (
            format!(
                "{v1}/instance/service-accounts/default/identity?audience=https://workload.test"
            ),
            Flavor,
            IdToken { full: false },
        ),
        (
            format!("{v1}/instance/service-accounts/default/identity"),
            Flavor,
            Refusal(400, "non-empty audience parameter required"),
        ),
        (
            format!("{v1}/instance/service-accounts/default/identity?audience=a&format=compact"),
            Flavor,
            Refusal(400, "standard or full"),
        ),
        // The project.
        (
            format!("{v1}/project/"),
            Flavor,
            text("attributes/\nnumeric-project-id\nproject-id\n"),
        ),
        (
            format!("{v1}/project/?recursive=true"),
            Flavor,
            Json(project.clone()),
        ),
        (
            format!("{v1}/project/project-id"),
            Flavor,
            text("secundus-bank"),
        ),
        (
            format!("{v1}/project/project-id?alt=json"),
            Flavor,
            Json(json!("secundus-bank")),
        ),
        (
            format!("{v1}/project/project-id?alt=text"),
            Flavor,
            text("secundus-bank"),
        ),
        (format!("{v1}/project/numeric-project-id"), Flavor, text(n)),
        (
            format!("{v1}/project/numeric-project-id?alt=json"),
            Flavor,
            Json(json!(n.parse::<u64>().unwrap())),
        ),
        (format!("{v1}/project/attributes/"), Flavor, text("")),
        // The instance.
        (
            format!("{v1}/instance/zone"),
            Flavor,
            Text(format!("projects/{n}/zones/us-west1-b")),
        ),
        (format!("{v1}/instance/id"), Flavor, Text(ID.to_string())),
        (
            format!("{v1}/instance/id?alt=json"),
            Flavor,
            Json(json!(ID)),
        ),
        (format!("{v1}/instance/name"), Flavor, text("workload-vm")),
        (
            format!("{v1}/instance/hostname"),
            Flavor,
            text("workload-vm.us-west1-b.c.secundus-bank.internal"),
        ),
        (
            format!("{v1}/instance/machine-type"),
            Flavor,
            Text(format!("projects/{n}/machineTypes/cloister-local")),
        ),
        (format!("{v1}/instance/tags"), Flavor, text("[]")),
        (
            format!("{v1}/instance/tags?alt=json"),
            Flavor,
            Json(json!([])),
        ),
        // Network interfaces, as GCE shapes them.
        (
            format!("{v1}/instance/network-interfaces/"),
            Flavor,
            text("0/\n"),
        ),
        (
            format!("{v1}/instance/network-interfaces/0/"),
            Flavor,
            text("access-configs/\nip\nmac\nmtu\nnetwork\nsubnetmask\n"),
        ),
        (
            format!("{v1}/instance/network-interfaces/0/ip"),
            Flavor,
            text("127.0.0.1"),
        ),
        (
            format!("{v1}/instance/network-interfaces/0/network"),
            Flavor,
            Text(format!("projects/{n}/networks/cloister-sandbox")),
        ),
        (
            format!("{v1}/instance/network-interfaces/0/mtu?alt=json"),
            Flavor,
            Json(json!(65536)),
        ),
        (
            format!("{v1}/instance/network-interfaces/0/access-configs/"),
            Flavor,
            text(""),
        ),
        (
            format!("{v1}/instance/network-interfaces/?recursive=true"),
            Flavor,
            Json(json!([interface])),
        ),
        (
            format!("{v1}/instance/network-interfaces/?recursive=true&alt=text"),
            Flavor,
            Text(format!(
                "0/ip 127.0.0.1\n0/mac 00:00:00:00:00:00\n0/mtu 65536\n0/network projects/{n}/networks/cloister-sandbox\n0/subnetmask 255.0.0.0\n"
            )),
        ),
        (
            format!("{v1}/instance/network-interfaces/1/"),
            Flavor,
            Page(404, "was not found"),
        ),
        (
            format!("{v1}/instance/network-interfaces/00/ip"),
            Flavor,
            Page(404, "was not found"),
        ),
        (
            format!("{v1}/instance/id/"),
            Flavor,
            Page(404, "was not found"),
        ),
        (
            format!("{v1}/instance//id"),
            Flavor,
            Page(404, "was not found"),
        ),
        (
            format!("{v1}/universe/universe-domain"),
            Flavor,
            text("googleapis.com"),
        ),
        // Attributes: listed, recursive (JSON and text), one by one.
        (
            format!("{v1}/instance/attributes/"),
            Flavor,
            text("tee-image-reference\ntee-restart-policy\n"),
        ),
        (
            format!("{v1}/instance/attributes/?alt=json"),
            Flavor,
            Json(json!(["tee-image-reference", "tee-restart-policy"])),
        ),
        (
            format!("{v1}/instance/attributes/?recursive=true"),
            Flavor,
            Json(attributes.clone()),
        ),
        (
            format!("{v1}/instance/attributes/?recursive=true&alt=text"),
            Flavor,
            text("tee-image-reference registry.test/w:1\ntee-restart-policy Never\n"),
        ),
        (
            format!("{v1}/instance/attributes"),
            Flavor,
            Redirect("http://metadata.google.internal/computeMetadata/v1/instance/attributes/"),
        ),
        (
            format!("{v1}/instance/attributes/tee-restart-policy"),
            Flavor,
            text("Never"),
        ),
        (
            format!("{v1}/instance/attributes/tee-restart-policy?alt=json"),
            Flavor,
            Json(json!("Never")),
        ),
        (
            format!("{v1}/instance/attributes/missing"),
            Flavor,
            Page(404, "/computeMetadata/v1/instance/attributes/missing"),
        ),
        (
            format!("{v1}/instance/service-accounts/?recursive=true&alt=text"),
            Flavor,
            Text(format!(
                "default/aliases default\ndefault/email {SA}\ndefault/scopes {CLOUD_PLATFORM}\n{SA}/aliases default\n{SA}/email {SA}\n{SA}/scopes {CLOUD_PLATFORM}\n"
            )),
        ),
        (
            format!("{v1}/project/project-id?alt=xml"),
            Flavor,
            Refusal(400, "Invalid alt value"),
        ),
        // The header rules: required (but not on `/`), exact, legacy refused, no proxies.
        (
            format!("{v1}/project/project-id"),
            NoHeader,
            Page(403, "Missing Metadata-Flavor:Google header."),
        ),
        (
            format!("{v1}/instance/service-accounts/default/token"),
            NoHeader,
            Page(403, "Missing Metadata-Flavor:Google header."),
        ),
        (
            format!("{v1}/"),
            NoHeader,
            Page(403, "Missing Metadata-Flavor:Google header."),
        ),
        (
            format!("{v1}/instance/service-accounts/default/token"),
            Legacy,
            Page(403, "X-Google-Metadata-Request"),
        ),
        (
            format!("{v1}/instance/service-accounts/default/token"),
            WrongFlavor,
            Page(403, "Missing Metadata-Flavor:Google header."),
        ),
        (
            format!("{v1}/instance/service-accounts/default/token"),
            Forwarded,
            Page(403, "proxy"),
        ),
        ("/".into(), Forwarded, Page(403, "proxy")),
        // GCE's legacy endpoints are gone.
        (
            "/computeMetadata/v1beta1/instance/name".into(),
            Flavor,
            Page(404, "was not found"),
        ),
        (
            "/0.1/meta-data/project-id".into(),
            Flavor,
            Page(404, "was not found"),
        ),
    ];
    let mut failures = Vec::new();
    for (path, headers, expect) in &cases {
        let a = get(&w.router, path, *headers).await;
        if let Err(why) = check(&w, &a, expect) {
            failures.push(format!(
                "GET {path} ({headers:?}): {why}\n  got {} {:?} {:?}",
                a.status,
                header(&a, "content-type"),
                a.body
            ));
        }
        // Every answer, refusals included, says it is Google's metadata server.
        if header(&a, "metadata-flavor") != "Google" {
            failures.push(format!(
                "GET {path}: no Metadata-Flavor: Google in the answer"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn check(w: &World, a: &Answer, expect: &Expect) -> Result<(), String> {
    let ctype = header(a, "content-type");
    let want = |status: u16, ctype_prefix: &str| {
        if a.status.as_u16() != status {
            return Err(format!("status {}, want {status}", a.status));
        }
        if !ctype.starts_with(ctype_prefix) {
            return Err(format!("content-type {ctype:?}, want {ctype_prefix}"));
        }
        Ok(())
    };
    match expect {
        Expect::Text(body) => {
            want(200, "application/text")?;
            if header(a, "etag").len() != 16 {
                return Err("no 16-digit ETag".into());
            }
            (a.body == *body)
                .then_some(())
                .ok_or_else(|| format!("body, want {body:?}"))
        }
        Expect::Json(v) => {
            want(200, "application/json")?;
            let got: Value = serde_json::from_str(&a.body).map_err(|e| e.to_string())?;
            (got == *v)
                .then_some(())
                .ok_or_else(|| format!("JSON, want {v}"))
        }
        Expect::Redirect(location) => {
            want(301, "text/html")?;
            (header(a, "location") == *location)
                .then_some(())
                .ok_or_else(|| format!("Location {:?}, want {location}", header(a, "location")))
        }
        Expect::Page(status, text) => {
            want(*status, "text/html")?;
            a.body
                .contains(text)
                .then_some(())
                .ok_or_else(|| format!("page without {text:?}"))
        }
        Expect::Refusal(status, text) => {
            want(*status, "application/text")?;
            a.body
                .contains(text)
                .then_some(())
                .ok_or_else(|| format!("refusal without {text:?}"))
        }
        Expect::AccessToken => {
            want(200, "application/json")?;
            let v: Value = serde_json::from_str(&a.body).map_err(|e| e.to_string())?;
            let expires = v["expires_in"].as_i64().unwrap_or_default();
            if v["token_type"] != "Bearer" || !(3000..=3600).contains(&expires) {
                return Err(format!("token answer {v}"));
            }
            let token = v["access_token"].as_str().unwrap_or_default();
            let who = w
                .api
                .server
                .state
                .tokens
                .verify(token)
                .map_err(|e| format!("the API refuses the token: {e}"))?;
            (who.principal.to_string() == format!("serviceAccount:{SA}"))
                .then_some(())
                .ok_or_else(|| format!("the token is {}'s", who.principal))
        }
        Expect::IdToken { full } => {
            want(200, "application/text")?;
            let c = claims(&a.body);
            let ok = c["aud"] == "https://workload.test"
                && c["iss"] == format!("{}/accounts", w.api.server.state.public_url)
                && (c["email"] == SA) == *full
                && (c["google"]["compute_engine"]
                    == json!({
                        "instance_creation_timestamp": 1_700_000_000,
                        "instance_id": ID.to_string(),
                        "instance_name": "workload-vm",
                        "project_id": "secundus-bank",
                        "project_number": w.number.parse::<u64>().unwrap(),
                        "zone": "us-west1-b",
                    }))
                    == *full;
            ok.then_some(()).ok_or_else(|| format!("claims {c}"))
        }
    }
}

/// `wait_for_change`: a changed ETag answers at once; an unchanged one after `timeout_sec`,
/// with the same value (the Go client's `Subscribe` loop).
#[tokio::test]
async fn waiting_for_a_change_holds_only_an_unchanged_value() {
    let w = world().await;
    let path = "/computeMetadata/v1/instance/attributes/tee-restart-policy";
    let first = get(&w.router, path, Headers::Flavor).await;
    let etag = header(&first, "etag").to_owned();
    let start = Instant::now();
    let other = get(
        &w.router,
        &format!("{path}?wait_for_change=true&last_etag=0000000000000000"),
        Headers::Flavor,
    )
    .await;
    assert_eq!(other.body, "Never");
    assert!(start.elapsed() < Duration::from_secs(1));
    let start = Instant::now();
    let same = get(
        &w.router,
        &format!("{path}?wait_for_change=true&last_etag={etag}&timeout_sec=1"),
        Headers::Flavor,
    )
    .await;
    assert_eq!((same.status, same.body.as_str()), (StatusCode::OK, "Never"));
    assert!(start.elapsed() >= Duration::from_secs(1));
    let bad = get(
        &w.router,
        &format!("{path}?wait_for_change=true&timeout_sec=soon"),
        Headers::Flavor,
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}
