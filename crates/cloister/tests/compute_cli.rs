//! Instances end to end on the local driver: a workload image pushed with `cloister artifacts
//! push` runs under the launcher (runc) on INSECURE and on a vTPM (swtpm); it reads its token
//! file and asks the teeserver for a custom token; the serial console shows both, and every
//! claim matches what was launched. Launch-policy refusals stop an instance before anything
//! runs, with Google's words on the serial console.

mod support;

use base64::Engine;
use serde_json::Value;
use support::instances::{COUNTER, COUNTER_LABELS, Secundus, processes_running};

fn claims(token: &str) -> Value {
    let payload = token.trim().split('.').nth(1).expect("a JWT");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

fn line<'a>(serial: &'a str, prefix: &str) -> &'a str {
    serial
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in the serial output:\n{serial}"))
}

#[test]
fn a_workload_runs_attested_and_its_claims_match_what_was_launched() {
    let s = Secundus::setup();
    // The workload may also act as model-reader (it impersonates it; IAM allows it).
    s.alice(&[
        "iam",
        "service-accounts",
        "create",
        "model-reader",
        "--project",
        "secundus-bank",
    ]);
    s.alice(&[
        "iam",
        "service-accounts",
        "add-iam-policy-binding",
        "model-reader@secundus-bank.iam.gserviceaccount.com",
        "--member",
        "serviceAccount:workload-sa@secundus-bank.iam.gserviceaccount.com",
        "--role",
        "roles/iam.serviceAccountTokenCreator",
    ]);
    for (name, kind) in [("probe-insecure", "INSECURE"), ("probe-vtpm", "VTPM")] {
        let metadata = format!(
            "^~^tee-image-reference={}~tee-restart-policy=Never~tee-container-log-redirect=true~tee-cmd=[\"custom-arg\"]~tee-impersonate-service-accounts=model-reader@secundus-bank.iam.gserviceaccount.com",
            s.image
        );
        s.create(name, kind, &metadata);
        let serial = s.finished_serial(name);
        assert!(serial.contains("PROBE DONE"), "{serial}");
        assert_eq!(line(&serial, "PROBE ARG "), "custom-arg");

        let default = claims(line(&serial, "PROBE DEFAULT "));
        let container = &default["submods"]["container"];
        assert_eq!(container["image_digest"], s.digest.as_str(), "{default:#}");
        assert_eq!(container["image_reference"], s.image.as_str());
        assert_eq!(container["restart_policy"], "Never");
        assert_eq!(
            container["args"],
            serde_json::json!(["/usr/local/bin/probe", "custom-arg"])
        );
        assert_eq!(container["cmd_override"], serde_json::json!(["custom-arg"]));
        assert_eq!(
            container["env"]["CLOISTER_API_ENDPOINT"],
            s.w.server.endpoint().as_str()
        );
        // The instance's own metadata server, at GCE's address inside its sandbox.
        assert_eq!(container["env"]["GCE_METADATA_HOST"], "169.254.169.254");
        assert_eq!(default["aud"], "https://sts.googleapis.com");
        assert_eq!(
            default["google_service_accounts"],
            serde_json::json!([
                "workload-sa@secundus-bank.iam.gserviceaccount.com",
                "model-reader@secundus-bank.iam.gserviceaccount.com"
            ])
        );

        let custom = claims(line(&serial, "PROBE CUSTOM "));
        assert_eq!(custom["aud"], "https://secundus.example/custom");
        assert_eq!(
            custom["eat_nonce"],
            serde_json::json!("0123456789abcdef"),
            "{custom:#}"
        );
        assert_eq!(
            custom["submods"]["container"]["image_digest"],
            s.digest.as_str()
        );

        if kind == "VTPM" {
            assert_eq!(default["hwmodel"], "VTPM", "{default:#}");
            let gce = &default["submods"]["gce"];
            assert_eq!(gce["instance_name"], name);
            assert_eq!(gce["project_id"], "secundus-bank");
            assert_eq!(gce["zone"], "us-west1-b");
            // The server registered the launcher it ships; its instances are supported.
            assert_eq!(
                default["submods"]["confidential_space"]["support_attributes"],
                serde_json::json!(["LATEST", "STABLE", "USABLE"])
            );
            assert_eq!(default["dbgstat"], "disabled-since-boot");
            assert_eq!(default["swname"], "CONFIDENTIAL_SPACE");
        } else {
            assert_eq!(default["hwmodel"], "INSECURE");
            assert_eq!(default["swname"], "INSECURE");
            assert_eq!(default["dbgstat"], "enabled");
        }
        s.alice(&[
            "compute",
            "instances",
            "delete",
            name,
            "--project",
            "secundus-bank",
            "--zone",
            "us-west1-b",
        ]);
    }
    let listed = s.alice(&[
        "compute",
        "instances",
        "list",
        "--project",
        "secundus-bank",
        "--format",
        "value(name)",
    ]);
    assert_eq!(listed.trim(), "", "deleted instances are gone");
}

#[test]
fn launch_policy_refusals_stop_the_instance_before_anything_runs() {
    let s = Secundus::setup();
    for (name, extra, why) in [
        (
            "cmd-override",
            "~tee-cmd=[\"x\"]",
            "CMD is not allowed to be overridden on this image",
        ),
        (
            "env-override",
            "~tee-env-SECRET=1",
            "env var SECRET is not allowed to be overridden on this image",
        ),
        (
            "log-redirect",
            "~tee-container-log-redirect=true",
            "logging redirection only allowed on debug environment by image",
        ),
    ] {
        let metadata = format!("^~^tee-image-reference={}{extra}", s.strict_image);
        s.create(name, "INSECURE", &metadata);
        let serial = s.finished_serial(name);
        assert!(serial.contains(why), "{name}: {serial}");
        assert!(
            !serial.contains("workload started"),
            "{name}: nothing ran:\n{serial}"
        );
    }
    // Hosts refuse what they cannot provide; nothing is downgraded.
    let err = s.w.cli.fails(&[
        "--profile",
        "alice",
        "compute",
        "instances",
        "create",
        "snp",
        "--project",
        "secundus-bank",
        "--zone",
        "us-west1-b",
        "--confidential-compute-type",
        "SEV_SNP",
        "--service-account",
        "workload-sa@secundus-bank.iam.gserviceaccount.com",
        "--metadata",
        &format!("tee-image-reference={}", s.image),
    ]);
    assert!(
        err.contains("cannot provide SEV_SNP") && err.contains("never downgrades"),
        "{err}"
    );
    // Bob may not run workloads as Secundus's account.
    let err = s.w.cli.fails(&[
        "--profile",
        "bob",
        "compute",
        "instances",
        "create",
        "bobs",
        "--project",
        "secundus-bank",
        "--zone",
        "us-west1-b",
        "--confidential-compute-type",
        "INSECURE",
        "--service-account",
        "workload-sa@secundus-bank.iam.gserviceaccount.com",
        "--metadata",
        &format!("tee-image-reference={}", s.image),
    ]);
    assert!(
        err.contains("compute.instances.create") || err.contains("actAs"),
        "{err}"
    );
}

fn runs(serial: &str) -> Vec<&str> {
    serial.lines().filter(|l| l.starts_with("RUN ")).collect()
}

#[test]
fn restart_policies_decide_whether_a_workload_runs_again() {
    let s = Secundus::setup();
    let (image, _) = s.push_program("counter", COUNTER, COUNTER_LABELS);
    for (name, policy, mode, expected_runs, exit) in [
        ("flaky-onfailure", "OnFailure", "flaky", 3, 0),
        ("ok-onfailure", "OnFailure", "ok", 1, 0),
        ("fail-never", "Never", "fail", 1, 1),
    ] {
        let metadata = format!(
            "^~^tee-image-reference={image}~tee-restart-policy={policy}~tee-container-log-redirect=true~tee-cmd=[\"{mode}\"]"
        );
        s.create(name, "INSECURE", &metadata);
        let serial = s.finished_serial(name);
        assert_eq!(runs(&serial).len(), expected_runs, "{name}:\n{serial}");
        assert!(
            serial.contains(&format!("workload finished with exit code {exit}")),
            "{name}:\n{serial}"
        );
    }
}

#[test]
fn tokens_are_refreshed_and_deleting_an_instance_stops_its_workload() {
    // Ten-second tokens: the launcher refreshes at 0.7–0.9 of their life.
    let s = Secundus::setup_with(&["--attestation-token-lifetime-secs", "10"]);
    let (image, _) = s.push_program("sleeper", COUNTER, COUNTER_LABELS);
    let metadata = format!(
        "^~^tee-image-reference={image}~tee-container-log-redirect=true~tee-cmd=[\"sleep\"]"
    );
    s.create("sleeper", "VTPM", &metadata);
    s.wait_for("sleeper", "RUN 1 sleep");
    s.wait_for("sleeper", "attestation token refreshed");
    assert_eq!(s.status("sleeper"), "RUNNING");

    let running = || processes_running("/usr/local/bin/sleeper");
    assert_eq!(
        running(),
        1,
        "the workload runs as a process of this host, under runc"
    );
    s.alice(&[
        "compute",
        "instances",
        "delete",
        "sleeper",
        "--project",
        "secundus-bank",
        "--zone",
        "us-west1-b",
    ]);
    assert_eq!(running(), 0, "deleting the instance stopped its workload");
    let instances = s.w.dir.path().join("data/instances");
    assert_eq!(
        std::fs::read_dir(&instances)
            .map(|d| d.count())
            .unwrap_or(0),
        0,
        "and removed its runtime directory"
    );
}

/// One server with room for one instance: a second waits, PROVISIONING, saying why, and
/// starts as soon as the first is deleted (no replica polls here: the delete wakes it).
/// Stopped and started again, an instance is placed again the same way. A project's quota
/// of two refuses a third, waiting or not, with Compute Engine's words.
#[test]
fn an_instance_waits_for_room_on_a_full_server_and_starts_when_one_is_deleted() {
    let s = Secundus::setup_with(&["--max-instances", "1", "--project-instance-quota", "2"]);
    let (image, _) = s.push_program("roomy", COUNTER, COUNTER_LABELS);
    let sleeper = format!(
        "^~^tee-image-reference={image}~tee-container-log-redirect=true~tee-cmd=[\"sleep\"]"
    );
    let place = ["--project", "secundus-bank", "--zone", "us-west1-b"];
    let describe = |name: &str, field: &str| {
        let format = format!("value({field})");
        let args = [
            "compute",
            "instances",
            "describe",
            name,
            "--format",
            &format,
        ];
        s.alice(&[&args[..], &place[..]].concat()).trim().to_owned()
    };
    s.create("one", "INSECURE", &sleeper);
    s.wait_for("one", "RUN 1 sleep");
    s.create("two", "INSECURE", &sleeper);
    assert_eq!(describe("two", "status"), "PROVISIONING");
    let over = s.w.cli.fails(&[
        "--profile",
        "alice",
        "compute",
        "instances",
        "create",
        "three",
        "--project",
        "secundus-bank",
        "--zone",
        "us-west1-b",
        "--confidential-compute-type",
        "INSECURE",
        "--service-account",
        "workload-sa@secundus-bank.iam.gserviceaccount.com",
        "--metadata",
        &sleeper,
    ]);
    assert!(
        over.contains("Quota 'INSTANCES' exceeded.  Limit: 2.0 in project secundus-bank"),
        "{over}"
    );
    assert!(
        describe("two", "statusMessage").contains("does not have enough resources"),
        "{}",
        describe("two", "statusMessage")
    );
    s.alice(&[&["compute", "instances", "delete", "one"][..], &place[..]].concat());
    s.wait_for("two", "RUN 1 sleep");
    assert_eq!(describe("two", "statusMessage"), "");

    // Stopped, it ends and stays TERMINATED; started again, it is placed and runs anew.
    let running = || processes_running("/usr/local/bin/roomy");
    assert_eq!(running(), 1);
    s.alice(&[&["compute", "instances", "stop", "two"][..], &place[..]].concat());
    assert_eq!(describe("two", "status"), "TERMINATED");
    assert_eq!(running(), 0, "stopping ended the workload");
    // A stopped instance keeps its console, as in Compute Engine: the run, and its stop.
    let serial = s.serial("two");
    assert_eq!(serial.matches("RUN 1 sleep").count(), 1, "{serial}");
    assert!(
        serial.contains("SIGTERM: stopping the workload"),
        "{serial}"
    );
    s.alice(&[&["compute", "instances", "start", "two"][..], &place[..]].concat());
    // The console goes on from there.
    s.wait_for_times("two", "RUN 1 sleep", 2);
    assert_eq!(describe("two", "status"), "RUNNING");
    assert_eq!(running(), 1);
    s.alice(&[&["compute", "instances", "delete", "two"][..], &place[..]].concat());
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_never_run() {
    let s = Secundus::setup();
    let token = s.alice(&["auth", "print-access-token"]).trim().to_owned();
    let raw = std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            &format!("oauth2accesstoken:{token}"),
            &format!("docker://{}", s.strict_image),
        ])
        .output()
        .unwrap();
    let manifest: Value = serde_json::from_slice(&raw.stdout).unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_owned();
    // Rot the layer on the server's disk (the registry checked it on upload; the launcher
    // must check again on pull).
    let mut corrupted = 0;
    let mut stack = vec![s.w.dir.path().join("data")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let mut bytes = std::fs::read(&p).unwrap();
            use sha2::Digest;
            if hex::encode(sha2::Sha256::digest(&bytes)) == layer {
                let mid = bytes.len() / 2;
                bytes[mid] ^= 1;
                std::fs::write(&p, bytes).unwrap();
                corrupted += 1;
            }
        }
    }
    assert_eq!(corrupted, 1);
    s.create(
        "rotten",
        "INSECURE",
        &format!("tee-image-reference={}", s.strict_image),
    );
    let serial = s.finished_serial("rotten");
    assert!(
        serial.contains("digest mismatch") && serial.contains("refusing to run it"),
        "{serial}"
    );
    assert!(!serial.contains("workload started"), "{serial}");
}
