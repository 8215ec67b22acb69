//! The console in a real browser: headless Chromium (Debian's package) driven over WebDriver
//! (Debian's chromium-driver, Selenium's Python client) signs in as two users and sees what
//! each may see. Screenshots are kept in the build's test-artifacts directory.

mod support;

use std::process::Command;

use support::World;

#[test]
fn two_users_see_their_own_projects_in_chromium() {
    let w = World::with_users(&[]);
    let (alice, bob) = (w.as_user("alice"), w.as_user("bob"));
    alice(&["projects", "create", "primus-bank"]);
    bob(&["projects", "create", "secundus-bank"]);
    let alice_link = alice(&["auth", "console-login"]).trim().to_owned();
    let bob_link = bob(&["auth", "console-login"]).trim().to_owned();
    assert!(alice_link.starts_with(&w.server.endpoint()), "{alice_link}");

    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    let script = support::crate_dir().join("tests/python/console_browser.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([&alice_link, &bob_link, "primus-bank", "secundus-bank"])
        .arg(&shots)
        .output()
        .expect("python3 runs (scripts/install-deps.sh installs selenium and chromium)");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        seen["alice_projects"],
        serde_json::json!(["primus-bank"]),
        "{seen}"
    );
    assert_eq!(
        seen["bob_projects"],
        serde_json::json!(["secundus-bank"]),
        "{seen}"
    );
    assert_eq!(seen["alice_cookie_http_only"], true, "{seen}");
    assert_eq!(seen["project_heading"], "primus-bank", "{seen}");
    assert!(
        seen["project_roles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "roles/owner"),
        "{seen}"
    );
    assert!(
        seen["after_sign_out"]
            .as_str()
            .unwrap()
            .ends_with("/console/login"),
        "{seen}"
    );
    assert!(
        seen["reused_code"]
            .as_str()
            .unwrap()
            .contains("unknown, used or expired"),
        "{seen}"
    );
    assert!(
        seen["bob_on_alices_project"]
            .as_str()
            .unwrap()
            .contains("resourcemanager.projects.getIamPolicy"),
        "{seen}"
    );
    for shot in [
        "alice-projects.png",
        "alice-project.png",
        "bob-projects.png",
        "bob-refused.png",
    ] {
        let png = std::fs::read(shots.join(shot)).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{shot}");
    }
}
