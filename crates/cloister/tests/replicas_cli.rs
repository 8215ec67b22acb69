//! Two `cloister server` processes on different ports, sharing a real PostgreSQL and a real
//! S3 server (Garage): a challenge issued by one is verified by the other, once; killing one
//! under load loses no write it acknowledged, and the other keeps serving; an instance's
//! console shows through either replica, and deleting it through either stops it where it runs.

#[path = "../../cloister-store/tests/support/garage.rs"]
mod garage;
#[path = "../../cloister-store/tests/support/postgres.rs"]
mod postgres;
mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use support::instances::{COUNTER, COUNTER_LABELS, Secundus, processes_running};
use support::{Server, attestation};

/// The bytes writer `w` puts in its `i`-th object (distinct per object, so a mix-up shows).
fn content(w: usize, i: usize) -> Vec<u8> {
    let seed = (w * 1_000_003 + i) as u32;
    (0..64 * 1024u32)
        .map(|j| (j.wrapping_mul(31).wrapping_add(seed) % 251) as u8)
        .collect()
}

struct Cluster {
    _garage: garage::Garage,
    dir: tempfile::TempDir,
    flags: Vec<String>,
    env: Vec<(String, String)>,
}

impl Cluster {
    fn new() -> Cluster {
        let garage = garage::Garage::start();
        let dir = tempfile::tempdir().unwrap();
        let kek = dir.path().join("kek");
        std::fs::write(&kek, rand::random::<[u8; 32]>()).unwrap();
        // The test server trusts loopback, so any password works: it shows the log hides it.
        let database = postgres::Postgres::database().replacen(
            "postgres://cloister@",
            "postgres://cloister:hunter2@",
            1,
        );
        let flags = vec![
            "--database-url".into(),
            database,
            "--blob-url".into(),
            format!("s3://{}/cluster", garage.bucket),
            "--kek-file".into(),
            kek.display().to_string(),
            "--public-url".into(),
            support::PUBLIC_URL.into(),
        ];
        let env = garage.options();
        Cluster {
            _garage: garage,
            dir,
            flags,
            env,
        }
    }

    fn replica(&self, name: &str) -> Server {
        let flags: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        Server::try_start_env(&self.dir.path().join(name), &flags, &self.env)
            .unwrap_or_else(|log| panic!("replica {name} did not start:\n{log}"))
    }
}

/// POSTs `body`; the call must succeed.
async fn post(http: &reqwest::Client, token: &str, url: String, body: Value) -> Value {
    let resp = http
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{:?}", resp.status());
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_a_replica_under_load_loses_no_acknowledged_write() {
    let cluster = Cluster::new();
    let a = cluster.replica("a");
    let b = cluster.replica("b");
    let (a_url, b_url) = (a.endpoint(), b.endpoint());
    let http = reqwest::Client::new();

    // The bootstrap admin (created by whichever replica started first) logs in at B.
    let credential = ["a", "b"]
        .iter()
        .map(|r| {
            cluster
                .dir
                .path()
                .join(r)
                .join("bootstrap-admin-credential.json")
        })
        .find(|p| p.exists())
        .expect("one replica created the bootstrap admin");
    let credential: Value = serde_json::from_slice(&std::fs::read(credential).unwrap()).unwrap();
    let token: Value = http
        .post(format!("{b_url}/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", credential["client_id"].as_str().unwrap()),
            (
                "client_secret",
                credential["client_secret"].as_str().unwrap(),
            ),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    // The project through A, its bucket through B.
    for (url, body) in [
        (
            format!("{a_url}/v1/projects"),
            json!({"projectId": "primus-bank"}),
        ),
        (
            format!("{b_url}/storage/v1/b?project=primus-bank"),
            json!({"name": "primus-models"}),
        ),
    ] {
        post(&http, &token, url, body).await;
    }

    // Four writers, two on each replica, each recording the objects the server acknowledged.
    let acknowledged = Arc::new(Mutex::new(Vec::<(usize, usize, Instant)>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let url = if w % 2 == 0 { a_url.clone() } else { b_url.clone() };
            let (http, token, acknowledged, stop) =
                (http.clone(), token.clone(), Arc::clone(&acknowledged), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut failures = 0;
                for i in 0.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let sent = http
                        .post(format!(
                            "{url}/upload/storage/v1/b/primus-models/o?uploadType=media&name=w{w}-{i}"
                        ))
                        .bearer_auth(&token)
                        .body(content(w, i))
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status().is_success() => {
                            acknowledged.lock().unwrap().push((w, i, Instant::now()))
                        }
                        // The killed replica: refused connections, or a reset mid-request.
                        _ => {
                            failures += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                failures
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let killed_at = Instant::now();
    a.kill9();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut failures = Vec::new();
    for w in writers {
        failures.push(w.await.unwrap());
    }

    let acknowledged = acknowledged.lock().unwrap().clone();
    let on = |replica: usize, after: bool| {
        acknowledged
            .iter()
            .filter(|(w, _, t)| w % 2 == replica && (*t > killed_at) == after)
            .count()
    };
    eprintln!(
        "acknowledged: A {} before the kill; B {} before, {} after; failed on A: {}",
        on(0, false),
        on(1, false),
        on(1, true),
        failures[0] + failures[2]
    );
    assert!(
        on(0, false) > 0,
        "A acknowledged writes before it was killed"
    );
    assert!(
        on(1, true) > 0,
        "B kept acknowledging writes after A was killed"
    );
    assert!(
        failures[0] > 0 && failures[2] > 0,
        "writes to the killed replica failed: {failures:?}"
    );
    assert_eq!(
        failures[1] + failures[3],
        0,
        "no write to B failed: {failures:?}"
    );

    // Every acknowledged write, from either replica, is there and whole, read through B.
    for (w, i, _) in &acknowledged {
        let resp = http
            .get(format!(
                "{b_url}/download/storage/v1/b/primus-models/o/w{w}-{i}?alt=media"
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "w{w}-{i}: {:?}", resp.status());
        assert!(
            resp.bytes().await.unwrap() == content(*w, *i),
            "w{w}-{i} differs"
        );
    }
    b.stop();
}

/// Instances run on the replica that created them; another replica shows the instance's
/// serial console, and deleting it there (where there is no process to stop) still stops the
/// workload where it runs.
#[test]
fn an_instance_deleted_through_another_replica_stops_where_it_runs() {
    let (dir, flags) = shared_flags(&[]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let s = Secundus::setup_with(&flags);
    let metadata = sleeper(&s, "sleeper");
    s.create("sleeper", "INSECURE", &metadata);
    s.wait_for("sleeper", "RUN 1 sleep");
    let running = || processes_running("/usr/local/bin/sleeper");
    assert_eq!(running(), 1);

    let b = Server::try_start_env(&dir.path().join("b"), &flags, &[])
        .unwrap_or_else(|log| panic!("replica b did not start:\n{log}"));
    let at_b = login_at(&s, &b);
    let place = PLACE;
    let described = at_b(
        &[
            &[
                "compute",
                "instances",
                "describe",
                "sleeper",
                "--format",
                "value(status)",
            ],
            &place[..],
        ]
        .concat(),
    );
    assert_eq!(described.trim(), "RUNNING", "B sees the instance A runs");
    // A copies the console to the shared blob store as it grows: B shows it.
    let start = Instant::now();
    loop {
        let serial = at_b(
            &[
                &["compute", "instances", "get-serial-port-output", "sleeper"],
                &place[..],
            ]
            .concat(),
        );
        if serial.contains("RUN 1 sleep") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "B never showed A's console:\n{serial}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    at_b(&[&["compute", "instances", "delete", "sleeper"], &place[..]].concat());
    eventually("the workload stopped on A", || running() == 0);
    let listed = s.alice(
        &[
            &["compute", "instances", "list", "--format", "value(name)"],
            &place[..],
        ]
        .concat(),
    );
    assert_eq!(listed.trim(), "", "the instance is gone for A too");
}

/// A replica that stops renewing its lease loses its instances, as a failed host does in
/// Compute Engine. Cut off (its server stopped) past the lease, another replica marks its
/// instance TERMINATED, and once back it stops the workload itself. Crashed with its instance,
/// the other marks the instance TERMINATED without waiting for the replica to restart.
#[test]
fn a_replica_that_stops_renewing_its_lease_loses_its_instances() {
    let (dir, flags) = shared_flags(&["--replica-lease-secs", "6"]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let s = Secundus::setup_with(&flags);
    let metadata = sleeper(&s, "leased");
    let running = || processes_running("/usr/local/bin/leased");
    s.create("cut-off", "INSECURE", &metadata);
    s.wait_for("cut-off", "RUN 1 sleep");
    let b = Server::try_start_env(&dir.path().join("b"), &flags, &[])
        .unwrap_or_else(|log| panic!("replica b did not start:\n{log}"));
    let at_b = login_at(&s, &b);
    let status = |name: &str| {
        at_b(
            &[
                &[
                    "compute",
                    "instances",
                    "describe",
                    name,
                    "--format",
                    "value(status)",
                ],
                &PLACE[..],
            ]
            .concat(),
        )
        .trim()
        .to_owned()
    };
    assert_eq!(status("cut-off"), "RUNNING", "A renews its lease");

    let signal = |signal: &str, pid: String| {
        assert!(
            std::process::Command::new("kill")
                .args([signal, &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    let a = s.w.server.pid().to_string();
    signal("-STOP", a.clone());
    eventually("B marked the cut-off replica's instance TERMINATED", || {
        status("cut-off") == "TERMINATED"
    });
    assert_eq!(running(), 1, "the workload still runs where A was cut off");
    signal("-CONT", a);
    eventually(
        "A, back, stopped the instance the others call ended",
        || running() == 0,
    );
    assert_eq!(status("cut-off"), "TERMINATED");

    // A's machine crashes while it runs an instance: the server and the instance's processes
    // die, and A does not come back.
    s.create("crashed", "INSECURE", &metadata);
    s.wait_for("crashed", "RUN 1 sleep");
    signal("-9", s.w.server.pid().to_string());
    for pid in std::fs::read_dir("/proc").unwrap().filter_map(|e| {
        let e = e.ok()?;
        let cmdline =
            String::from_utf8_lossy(&std::fs::read(e.path().join("cmdline")).ok()?).into_owned();
        let ours = cmdline.starts_with("/usr/local/bin/leased")
            || (cmdline.contains("launcher")
                && cmdline.contains(&*s.w.dir.path().to_string_lossy()));
        ours.then(|| e.file_name().to_string_lossy().into_owned())
    }) {
        signal("-9", pid);
    }
    eventually("B marked the crashed replica's instance TERMINATED", || {
        status("crashed") == "TERMINATED"
    });
    // Restarted on its data directory, A starts cleanly beside the record B corrected.
    let restarted = Server::try_start_env(&s.w.dir.path().join("data"), &flags, &[])
        .unwrap_or_else(|log| panic!("A did not restart:\n{log}"));
    assert_eq!(status("crashed"), "TERMINATED");
    drop(restarted);
}

/// Placement through the database. An instance created through a replica with no room for
/// it (`--max-instances 0`) waits, PROVISIONING, saying why, and runs once a replica with room
/// joins. Two replicas racing for the instances that then wait run each one once, never more
/// than their limits allow; when one of them stops an instance, it takes a waiting one, and
/// the stopped one started again waits like a new one.
#[test]
fn instances_wait_for_a_replica_with_room_and_run_on_exactly_one() {
    let (dir, flags) = shared_flags(&[]);
    let with_room = |n: &str| {
        let mut f: Vec<String> = flags.clone();
        f.extend(["--max-instances".to_owned(), n.to_owned()]);
        f
    };
    let a_flags = with_room("0");
    let s = Secundus::setup_with(&a_flags.iter().map(String::as_str).collect::<Vec<_>>());
    let metadata = sleeper(&s, "placed");
    let running = || processes_running("/usr/local/bin/placed");
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
        s.alice(&[&args[..], &PLACE[..]].concat()).trim().to_owned()
    };
    s.create("first", "INSECURE", &metadata);
    assert_eq!(describe("first", "status"), "PROVISIONING");
    let why = describe("first", "statusMessage");
    assert!(
        why.contains("zones/us-west1-b' does not have enough resources available")
            && why.contains("--max-instances"),
        "{why}"
    );
    assert_eq!(running(), 0, "A has no room: nothing runs");

    let replica = |name: &str, room: &str| {
        // Behind one load balancer, as replicas are: A's address is the public URL (instances
        // pull their image from it and call the API there).
        let mut f = with_room(room);
        f.extend(["--public-url".to_owned(), s.w.server.endpoint()]);
        let f: Vec<&str> = f.iter().map(String::as_str).collect();
        Server::try_start_env(&dir.path().join(name), &f, &[])
            .unwrap_or_else(|log| panic!("replica {name} did not start:\n{log}"))
    };
    let b = replica("b", "2");
    // A type no live replica runs is refused, never left waiting (nor downgraded).
    let refused = s.w.cli.fails(
        &[
            &["--profile", "alice"][..],
            &[
                "compute",
                "instances",
                "create",
                "snp",
                "--confidential-compute-type",
            ],
            &["SEV_SNP", "--service-account", support::attestation::SA],
            &PLACE[..],
        ]
        .concat(),
    );
    assert!(
        refused.contains("no other replica of this control plane runs SEV_SNP instances"),
        "{refused}"
    );
    s.wait_for("first", "RUN 1 sleep");
    assert_eq!(describe("first", "status"), "RUNNING");
    assert_eq!(
        describe("first", "statusMessage"),
        "",
        "placed: not waiting"
    );

    // B has room for one more, C for one: of four new instances, two run and two wait.
    let c = replica("c", "1");
    let names = ["second", "third", "fourth", "fifth"];
    for name in names {
        s.create(name, "INSECURE", &metadata);
    }
    let launchers = |replica: &str| launchers_under(&dir.path().join(replica));
    let statuses = || names.map(|n| describe(n, "status"));
    let settled = || {
        let st = statuses();
        st.iter().filter(|s| *s == "RUNNING").count() == 2
            && st.iter().filter(|s| *s == "PROVISIONING").count() == 2
    };
    eventually("two of the four run and two wait", settled);
    eventually("their workloads run", || running() == 3);
    // Each instance runs on one replica, once; B and C stay within their limits.
    let on_a = launchers_under(&s.w.dir.path().join("data"));
    assert_eq!((launchers("b"), launchers("c"), on_a), (2, 1, 0));
    for name in names {
        if describe(name, "status") == "PROVISIONING" {
            assert!(describe(name, "statusMessage").contains("does not have enough resources"));
        }
    }

    // An instance on B is stopped through A: B ends it, and takes one of those waiting.
    s.alice(&[&["compute", "instances", "stop", "first"][..], &PLACE[..]].concat());
    eventually("a waiting instance took its place", || {
        statuses().iter().filter(|s| *s == "RUNNING").count() == 3
    });
    eventually("three workloads run", || running() == 3);
    assert_eq!((launchers("b"), launchers("c")), (2, 1));
    assert_eq!(describe("first", "status"), "TERMINATED");
    // Started again, it is placed as a new one is: no replica has room, so it waits.
    s.alice(&[&["compute", "instances", "start", "first"][..], &PLACE[..]].concat());
    assert_eq!(describe("first", "status"), "PROVISIONING");
    assert!(describe("first", "statusMessage").contains("does not have enough resources"));
    for name in ["first"].iter().chain(&names) {
        s.alice(&[&["compute", "instances", "delete", name][..], &PLACE[..]].concat());
    }
    eventually("every workload stopped", || running() == 0);
    b.stop();
    c.stop();
}

/// Launchers running instances from the data directory `dir` (a replica's).
fn launchers_under(dir: &std::path::Path) -> usize {
    let needle = format!("{}/instances/", dir.display());
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|cmdline| {
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            args.get(1).is_some_and(|a| a == "launcher") && args.iter().any(|a| a.contains(&needle))
        })
        .count()
}

const PLACE: [&str; 4] = ["--project", "secundus-bank", "--zone", "us-west1-b"];

/// Flags for replicas sharing a database, a KEK and blobs in a directory (two processes on one
/// machine may share object_store's file://), plus `extra`.
fn shared_flags(extra: &[&str]) -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let kek = dir.path().join("kek");
    std::fs::write(&kek, rand::random::<[u8; 32]>()).unwrap();
    std::fs::create_dir_all(dir.path().join("blobs")).unwrap();
    let mut flags = vec![
        "--database-url".to_owned(),
        postgres::Postgres::database(),
        "--blob-url".to_owned(),
        format!("file://{}", dir.path().join("blobs").display()),
        "--kek-file".to_owned(),
        kek.display().to_string(),
    ];
    flags.extend(extra.iter().map(|f| f.to_string()));
    (dir, flags)
}

/// Pushes the counter as `program` and returns the metadata of an instance that runs it,
/// sleeping, with its output on the console.
fn sleeper(s: &Secundus, program: &str) -> String {
    let (image, _) = s.push_program(program, COUNTER, COUNTER_LABELS);
    format!("^~^tee-image-reference={image}~tee-container-log-redirect=true~tee-cmd=[\"sleep\"]")
}

/// Logs alice in at replica `b`; runs the CLI there.
fn login_at<'a>(s: &'a Secundus, b: &Server) -> impl Fn(&[&str]) -> String + 'a {
    support::login(&s.w.cli, b, "alice-b", &s.w.dir.path().join("alice.json"));
    move |args: &[&str]| {
        let mut all = vec!["--profile", "alice-b"];
        all.extend(args);
        s.w.cli.ok(&all)
    }
}

/// Polls until `done`. The bound is not a speed limit: it only keeps a broken check from
/// hanging the suite.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(120), "never: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The KEK of a shared database is rotated with every replica stopped: while one runs (it
/// holds a lease), the rotation is refused, since it would keep sealing with the old KEK.
#[test]
fn rotating_the_kek_waits_for_every_replica_to_stop() {
    let cluster = Cluster::new();
    let (a, b) = (cluster.replica("a"), cluster.replica("b"));
    let new = cluster.dir.path().join("new-kek");
    std::fs::write(&new, rand::random::<[u8; 32]>()).unwrap();
    let rotate = || {
        std::process::Command::new(support::BIN)
            .arg("server")
            .args(&cluster.flags)
            .args(["rotate-kek", "--new-kek-file"])
            .arg(&new)
            .output()
            .unwrap()
    };
    let refused = rotate();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("2 replica(s) still run"), "{err}");
    a.stop();
    b.stop();
    let rotated = rotate();
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    let err = match Server::try_start_env(
        &cluster.dir.path().join("a"),
        &cluster.flags.iter().map(String::as_str).collect::<Vec<_>>(),
        &cluster.env,
    ) {
        Ok(_) => panic!("a replica with the old KEK started"),
        Err(log) => log,
    };
    assert!(err.contains("not the one that sealed"), "{err}");
    let mut flags = cluster.flags.clone();
    let kek = flags.iter().position(|f| f == "--kek-file").unwrap() + 1;
    flags[kek] = new.display().to_string();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Server::try_start_env(&cluster.dir.path().join("a"), &flags, &cluster.env)
        .unwrap_or_else(|log| panic!("a replica with the new KEK did not start:\n{log}"));
}

/// A challenge issued by one server process is verified by the other, once; the token the
/// second signs is published by the first (keys live in the database).
#[test]
fn a_challenge_from_one_replica_is_verified_by_the_other_once() {
    let cluster = Cluster::new();
    let flags: Vec<&str> = cluster.flags.iter().map(String::as_str).collect();
    let w = support::World::with_users_env(&flags, &cluster.env);
    let (sa_token, id_token) = attestation::workload_account(&w, support::PUBLIC_URL);
    let b = cluster.replica("b");
    let (a_url, b_url) = (w.server.endpoint(), b.endpoint());
    let log = b.log.lock().unwrap().join("\n");
    assert!(
        log.contains(r#""metadata":"postgres://cloister:***@127.0.0.1"#),
        "{log}"
    );
    assert!(
        !log.contains("hunter2"),
        "the database password is not logged"
    );

    let request = json!({
        "gcpCredentials": {"serviceAccountIdTokens": [id_token]},
        "insecureAttestation": {"canonicalEventLog": attestation::event_log()},
        "tokenOptions": {"audience": "https://sts.googleapis.com", "nonce": ["replica-nonce-1"], "tokenType": "TOKEN_TYPE_OIDC"},
    });
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let http = reqwest::Client::new();
        let post =
            |url: String, body: &Value| http.post(url).bearer_auth(&sa_token).json(body).send();
        let challenge: Value = post(
            format!("{a_url}/v1/projects/secundus-bank/locations/us-west1/challenges"),
            &json!({}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let name = challenge["name"]
            .as_str()
            .expect("a challenge name")
            .to_owned();
        let verified = post(format!("{b_url}/v1/{name}:verifyAttestation"), &request)
            .await
            .unwrap();
        assert!(verified.status().is_success(), "{:?}", verified.status());
        let token: Value = verified.json().await.unwrap();
        let again = post(format!("{a_url}/v1/{name}:verifyAttestation"), &request)
            .await
            .unwrap();
        assert_eq!(again.status(), reqwest::StatusCode::BAD_REQUEST);
        assert!(again.text().await.unwrap().contains("already used"));
        // B signed the token with a key A publishes.
        let header = token["oidcClaimsToken"]
            .as_str()
            .unwrap()
            .split('.')
            .next()
            .unwrap()
            .to_owned();
        let header: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(header)
                .unwrap(),
        )
        .unwrap();
        let jwks: Value = http
            .get(format!("{a_url}/jwks"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let kids: Vec<&Value> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| &k["kid"])
            .collect();
        assert!(
            kids.contains(&&header["kid"]),
            "{} not in {jwks}",
            header["kid"]
        );
    });
}
