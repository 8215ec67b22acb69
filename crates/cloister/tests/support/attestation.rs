//! What a workload needs to call the verifier through the real server: Secundus's workload
//! account allowed to verify, its access and ID tokens, and an INSECURE canonical event log.

use base64::Engine;
use cloister_eventlog::{COS_EVENT_PCR, Event, EventLog, EventType, HashAlg};

use super::World;

pub const SA: &str = "workload-sa@secundus-bank.iam.gserviceaccount.com";

/// Alice creates secundus-bank and its workload account with
/// `roles/confidentialcomputing.workloadUser` on the project.
pub fn create_workload_account(w: &World) {
    let a = w.as_user("alice");
    a(&["projects", "create", "secundus-bank"]);
    a(&[
        "iam",
        "service-accounts",
        "create",
        "workload-sa",
        "--project",
        "secundus-bank",
    ]);
    a(&[
        "projects",
        "add-iam-policy-binding",
        "secundus-bank",
        "--member",
        &format!("serviceAccount:{SA}"),
        "--role",
        "roles/confidentialcomputing.workloadUser",
    ]);
}

/// [`create_workload_account`], then the account's access token and an ID token for
/// `audience`.
pub fn workload_account(w: &World, audience: &str) -> (String, String) {
    create_workload_account(w);
    let a = w.as_user("alice");
    let access = a(&[
        "auth",
        "print-access-token",
        "--impersonate-service-account",
        SA,
    ]);
    let id = a(&[
        "auth",
        "print-identity-token",
        "--impersonate-service-account",
        SA,
        "--audiences",
        audience,
        "--include-email",
    ]);
    (access.trim().to_owned(), id.trim().to_owned())
}

/// A canonical event log of a launched container (base64), as INSECURE evidence carries it.
pub fn event_log() -> String {
    let mut log = EventLog::default();
    for e in [
        Event::new(EventType::ImageRef, "example.test/workload:latest"),
        Event::new(EventType::ImageDigest, "sha256:abcd"),
        Event::new(EventType::RestartPolicy, "Never"),
        Event::new(EventType::LaunchSeparator, Vec::new()),
    ] {
        log.append(COS_EVENT_PCR, &[HashAlg::Sha256], &e);
    }
    base64::engine::general_purpose::STANDARD.encode(log.encode())
}
