//! One suite for every metadata store: each test runs against the embedded SQLite store and
//! against a real PostgreSQL server (`support/postgres.rs`). A backend can open several
//! handles on one database: a reopened server, or another replica.

mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use cloister_domain::{
    AuditDetails, AuditEntry, ClauseOutcome, ClauseVerdict, ComparedValue, Decision, Email,
    ExchangeDetails, Member, Policy, ProjectId, ProjectNumber,
};
use cloister_store::{
    AuditFilter, BucketRecord, ChallengeRecord, ConfidentialType, ConsoleSession, ConsumeError,
    CredentialRecord, FederationRecord, ImageRef, InstanceRecord, InstanceStatus, KeyPurpose,
    KeyVersionState, KmsCryptoKey, KmsKeyRing, KmsKeyVersion, ManifestRecord, ManifestRefs,
    ObjectRecord, OverQuota, Placement, Preconditions, ProjectRecord, PutLimits, PutRefused,
    ReferenceValueRecord, RegistryBlob, RegistryUpload, ReplicaOffer, RepositoryRecord,
    SealedPlace, ServiceAccountRecord, Store, StoreError, StoredSigningKey, UploadSession,
    UserRecord,
};
use support::postgres::Postgres;
use time::OffsetDateTime;
use time::macros::datetime;

/// A backend's database, which tests can open several handles on.
enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Backend {
    /// A new handle on this backend's database (another replica, or the server reopened).
    async fn try_open(&self) -> Result<Arc<Store>, StoreError> {
        Ok(Arc::new(match self {
            Backend::Sqlite(dir) => Store::open_sqlite(&dir.path().join("meta.db")).await?,
            Backend::Postgres(url) => {
                Store::open_postgres(url, cloister_store::DEFAULT_DATABASE_CONNECTIONS).await?
            }
        }))
    }

    async fn open(&self) -> Arc<Store> {
        self.try_open().await.unwrap()
    }

    /// Runs SQL on the database directly, past the store; the database's error text.
    async fn execute(&self, sql: &str) -> Result<(), String> {
        use sqlx::Connection;
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        let result = match self {
            Backend::Sqlite(dir) => {
                let url = format!("sqlite://{}", dir.path().join("meta.db").display());
                let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut c).await.map(drop)
            }
            Backend::Postgres(url) => {
                let mut c = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut c).await.map(drop)
            }
        };
        result.map_err(|e| match e {
            sqlx::Error::Database(d) => d.message().to_owned(),
            e => e.to_string(),
        })
    }

    /// The SQL that records the schema version as `version`.
    fn set_schema_version(&self, version: i64) -> String {
        match self {
            Backend::Sqlite(_) => format!("PRAGMA user_version = {version}"),
            Backend::Postgres(_) => format!("UPDATE cloister_schema SET version = {version}"),
        }
    }
}

macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $test() {
                super::$test(&super::Backend::Sqlite(tempfile::tempdir().unwrap())).await
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $test() {
                super::$test(&super::Backend::Postgres(super::Postgres::database())).await
            })*
        }
    };
}

/// A fixed time, and one a little later.
const T: OffsetDateTime = datetime!(2026-01-01 0:00:00.123456789 UTC);
const T2: OffsetDateTime = datetime!(2026-01-02 0:00 UTC);

/// Unix seconds as a time (challenges and uploads keep whole seconds).
fn at(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).unwrap()
}

conformance!(
    projects_and_policies_survive_reopen,
    duplicate_project_ids_and_numbers_are_refused,
    a_stale_etag_is_refused_and_changes_nothing,
    the_audit_log_is_append_only_and_filterable,
    service_accounts_inherit_from_their_project_and_vanish_with_their_policy,
    providers_need_their_pool_and_updates_compare_etags,
    a_challenge_is_consumed_once_and_never_after_it_expires,
    users_and_credentials_round_trip,
    keys_are_listed_oldest_first_and_secrets_keep_the_first_value,
    objects_obey_generation_preconditions_and_list_in_byte_order,
    concurrent_writers_with_if_generation_match_never_both_win,
    a_challenge_raced_by_two_replicas_is_consumed_once,
    concurrent_policy_writers_with_one_etag_never_both_win,
    replicas_starting_together_agree_on_a_secret,
    upload_sessions_advance_only_from_the_offset_they_hold,
    a_writer_without_replace_never_replaces_and_the_quota_counts_the_project,
    the_quota_counts_registry_blobs_and_unfinished_uploads,
    deleting_a_bucket_cancels_its_upload_sessions,
    key_rotation_keeps_old_versions,
    destroying_a_key_version_erases_it_once_and_resealing_passes_it_by,
    manifests_need_their_content_and_tags_list_in_order,
    instances_round_trip_and_filter_by_zone,
    replicas_creating_at_once_never_pass_a_projects_instance_quota,
    users_creating_at_once_never_pass_their_project_quota,
    a_lapsed_replica_lease_terminates_its_instances_once,
    replicas_racing_for_waiting_instances_claim_each_once_within_their_limits,
    resealing_replaces_every_sealed_value_or_none,
    a_schema_newer_than_this_build_is_refused,
    reference_values_are_replaced_by_measurement_and_listed_in_order,
    every_resource_is_found_by_its_name_and_listed_under_its_parent,
    image_versions_list_in_time_order_whatever_their_fractional_seconds,
    a_project_is_deleted_only_when_empty_and_its_id_and_number_stay_taken,
    console_codes_sign_in_once_and_sessions_end_at_their_expiry,
);

async fn console_codes_sign_in_once_and_sessions_end_at_their_expiry(b: &Backend) {
    let s = b.open().await;
    s.create_console_login_code("c1", "alice@example.com", at(200))
        .await
        .unwrap();
    s.create_console_login_code("old", "alice@example.com", at(100))
        .await
        .unwrap();
    // Two browsers racing with one code: one signs in.
    let other = b.open().await;
    let (one, two) = tokio::join!(
        s.take_console_login_code("c1", at(150)),
        other.take_console_login_code("c1", at(150))
    );
    let mut got = [one.unwrap(), two.unwrap()];
    got.sort();
    assert_eq!(got, [None, Some("alice@example.com".to_owned())]);
    assert_eq!(
        s.take_console_login_code("old", at(150)).await.unwrap(),
        None
    );
    assert_eq!(
        s.take_console_login_code("nope", at(150)).await.unwrap(),
        None
    );

    let session = ConsoleSession {
        id_hash: "h1".into(),
        email: "alice@example.com".into(),
        csrf_token: "t".into(),
        create_time: at(100),
        expire_time: at(200),
    };
    s.create_console_session(&session).await.unwrap();
    assert_eq!(
        other.get_console_session("h1", at(199)).await.unwrap(),
        Some(session.clone())
    );
    assert_eq!(s.get_console_session("h1", at(200)).await.unwrap(), None);
    s.sweep_console(at(200)).await.unwrap();
    assert_eq!(s.get_console_session("h1", at(150)).await.unwrap(), None);
    s.create_console_session(&session).await.unwrap();
    s.delete_console_session("h1").await.unwrap();
    assert_eq!(s.get_console_session("h1", at(150)).await.unwrap(), None);
}

async fn image_versions_list_in_time_order_whatever_their_fractional_seconds(b: &Backend) {
    let s = b.open().await;
    s.create_project(&project("alpha-1", 123456789012), &owner_policy(), None)
        .await
        .unwrap();
    s.create_repository(&repository()).await.unwrap();
    // A whole second written as text ("…:40Z") sorts after a later time with a fraction
    // ("…:40.1Z") unless every time is written with the same number of digits.
    let whole = at(1_700_000_040);
    for (digest, time) in [
        ("sha256:later", whole + time::Duration::milliseconds(100)),
        ("sha256:first", whole),
    ] {
        let manifest = ManifestRecord {
            digest: digest.into(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            content: b"{}".to_vec(),
            subject: None,
            artifact_type: None,
            create_time: time,
        };
        s.put_manifest(&image(), &manifest, &ManifestRefs::default(), None)
            .await
            .unwrap()
            .unwrap();
    }
    let order: Vec<String> = s
        .list_image_versions(&repository().name())
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.digest)
        .collect();
    assert_eq!(order, ["sha256:first", "sha256:later"]);
}

/// Each table and its columns, by name.
async fn schema(b: &Backend) -> BTreeMap<String, Vec<String>> {
    drop(b.open().await);
    let sql = match b {
        Backend::Sqlite(_) => {
            "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'"
        }
        Backend::Postgres(_) => {
            "SELECT table_name::TEXT, column_name::TEXT FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name <> 'cloister_schema'"
        }
    };
    let rows: Vec<(String, String)> = match b {
        Backend::Sqlite(dir) => {
            let url = format!("sqlite://{}", dir.path().join("meta.db").display());
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            sqlx::query_as(sql).fetch_all(&pool).await.unwrap()
        }
        Backend::Postgres(url) => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query_as(sql).fetch_all(&pool).await.unwrap()
        }
    };
    let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (table, column) in rows {
        tables.entry(table).or_default().push(column);
    }
    tables.values_mut().for_each(|columns| columns.sort());
    tables
}

/// Every statement is written once for both backends, so their migrations must build the same
/// tables with the same columns.
#[tokio::test]
async fn both_backends_migrate_to_the_same_tables_and_columns() {
    let sqlite = schema(&Backend::Sqlite(tempfile::tempdir().unwrap())).await;
    let postgres = schema(&Backend::Postgres(Postgres::database())).await;
    assert!(sqlite.len() > 20, "{sqlite:?}");
    assert_eq!(sqlite, postgres);
}

async fn reference_values_are_replaced_by_measurement_and_listed_in_order(b: &Backend) {
    let s = b.open().await;
    let value = |measurement: &str, swversion: &str| ReferenceValueRecord {
        measurement: measurement.into(),
        swversion: swversion.into(),
        dbgstat: "disabled-since-boot".into(),
        support_attributes: vec!["LATEST".into(), "STABLE".into()],
        description: "launcher".into(),
        create_time: T,
    };
    s.put_reference_value(&value("bb", "1")).await.unwrap();
    s.put_reference_value(&value("aa", "1")).await.unwrap();
    s.put_reference_value(&value("bb", "2")).await.unwrap();
    assert_eq!(
        s.get_reference_value("bb").await.unwrap(),
        Some(value("bb", "2")),
        "a second put replaces"
    );
    assert_eq!(
        s.list_reference_values().await.unwrap(),
        [value("aa", "1"), value("bb", "2")]
    );
    assert!(s.delete_reference_value("aa").await.unwrap());
    assert!(!s.delete_reference_value("aa").await.unwrap());
    assert_eq!(s.get_reference_value("aa").await.unwrap(), None);
}

async fn every_resource_is_found_by_its_name_and_listed_under_its_parent(b: &Backend) {
    let s = b.open().await;
    bucket(&s).await;
    let alpha = ProjectId::parse("alpha-1").unwrap();
    assert_eq!(
        s.list_buckets(&alpha)
            .await
            .unwrap()
            .iter()
            .map(|b| b.name.as_str())
            .collect::<Vec<_>>(),
        ["b1"]
    );
    assert!(
        s.list_buckets(&ProjectId::parse("beta-22").unwrap())
            .await
            .unwrap()
            .is_empty()
    );
    let user = UserRecord {
        email: Email::parse("u@x.com").unwrap(),
        display_name: "U".into(),
        admin: false,
        create_time: T,
    };
    s.create_user(&user).await.unwrap();
    assert_eq!(s.get_user(&user.email).await.unwrap(), Some(user));
    let sa = ServiceAccountRecord {
        email: Email::parse("sa-1@alpha-1.iam.gserviceaccount.com").unwrap(),
        project_id: alpha.clone(),
        unique_id: "100000000000000000001".into(),
        display_name: "d".into(),
        description: "desc".into(),
        disabled: true,
        create_time: T,
    };
    s.create_service_account(&sa).await.unwrap();
    assert_eq!(s.get_service_account(&sa.email).await.unwrap(), Some(sa));

    let ring = KmsKeyRing {
        name: "projects/alpha-1/locations/global/keyRings/r".into(),
        project_id: alpha.clone(),
        create_time: T,
    };
    s.create_key_ring(&ring).await.unwrap();
    assert_eq!(
        s.get_key_ring(&ring.name).await.unwrap(),
        Some(ring.clone())
    );
    for name in ["k2", "k1"] {
        let key = KmsCryptoKey {
            name: format!("{}/cryptoKeys/{name}", ring.name),
            key_ring: ring.name.clone(),
            purpose: KeyPurpose::EncryptDecrypt,
            primary_version: 1,
            create_time: T,
        };
        let first = KmsKeyVersion {
            key: key.name.clone(),
            version: 1,
            state: KeyVersionState::Disabled,
            wrapped_material: vec![1; 60],
            create_time: T,
        };
        s.create_crypto_key(&key, &first).await.unwrap();
        assert_eq!(s.get_key_version(&key.name, 1).await.unwrap(), Some(first));
    }
    let keys: Vec<String> = s
        .list_crypto_keys(&ring.name)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(
        keys,
        [
            format!("{}/cryptoKeys/k1", ring.name),
            format!("{}/cryptoKeys/k2", ring.name)
        ]
    );

    s.create_repository(&repository()).await.unwrap();
    assert_eq!(
        s.get_repository(&alpha, "models").await.unwrap(),
        Some(repository())
    );
    assert_eq!(s.get_repository(&alpha, "other").await.unwrap(), None);
    assert_eq!(s.list_repositories(&alpha).await.unwrap(), [repository()]);
    let image = image();
    let manifest = |digest: &str, subject: Option<&str>| ManifestRecord {
        digest: digest.into(),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        content: digest.as_bytes().to_vec(),
        subject: subject.map(str::to_owned),
        artifact_type: subject.map(|_| "application/vnd.dev.cosign.artifact.sig.v1+json".into()),
        create_time: T,
    };
    let none = ManifestRefs::default();
    for (m, tag) in [
        (manifest("sha256:m1", None), Some("v1")),
        (manifest("sha256:s2", Some("sha256:m1")), None),
        (manifest("sha256:s1", Some("sha256:m1")), None),
    ] {
        s.put_manifest(&image, &m, &none, tag)
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(
        s.list_referrers(&image, "sha256:m1").await.unwrap(),
        [
            manifest("sha256:s1", Some("sha256:m1")),
            manifest("sha256:s2", Some("sha256:m1"))
        ]
    );
    assert!(s.delete_tag(&image, "v1").await.unwrap());
    assert!(!s.delete_tag(&image, "v1").await.unwrap());
    assert!(
        s.get_manifest(&image, "sha256:m1").await.unwrap().is_some(),
        "a manifest outlives its tag"
    );
    let upload = RegistryUpload {
        upload_id: "r1".into(),
        image: image.clone(),
        received: 0,
        chunks: 0,
        single_chunk_sha256: None,
        create_time: at(100),
    };
    s.create_registry_upload(&upload).await.unwrap();
    assert_eq!(s.get_registry_upload("r1").await.unwrap(), Some(upload));
    assert!(s.delete_registry_upload("r1").await.unwrap());
    assert!(!s.delete_registry_upload("r1").await.unwrap());
}

/// Runs `f(i, store)` as `n` tasks at once, alternating between two handles (replicas).
async fn race<T, F, Fut>(b: &Backend, n: usize, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize, Arc<Store>) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let replicas = [b.open().await, b.open().await];
    let start = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let work = f(i, Arc::clone(&replicas[i % 2]));
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                work.await
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

/// Exactly one of `results` is a success, and every other is `lost`.
fn one_winner<T: std::fmt::Debug, E: std::fmt::Debug>(
    results: &[Result<T, E>],
    lost: impl Fn(&E) -> bool,
) {
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().is_ok() || r.as_ref().is_err_and(&lost)),
        "{results:?}"
    );
}

async fn a_schema_newer_than_this_build_is_refused(b: &Backend) {
    drop(b.open().await);
    b.execute(&b.set_schema_version(999)).await.unwrap();
    let Err(e) = b.try_open().await else {
        panic!("an older build opened a newer schema");
    };
    assert!(
        e.to_string()
            .contains("schema is version 999, newer than this cloister"),
        "{e}"
    );
}

async fn bucket(s: &Store) {
    s.create_project(&project("alpha-1", 123456789012), &owner_policy(), None)
        .await
        .unwrap();
    s.create_bucket(&BucketRecord {
        name: "b1".into(),
        project_id: ProjectId::parse("alpha-1").unwrap(),
        location: "US".into(),
        storage_class: "STANDARD".into(),
        create_time: T,
    })
    .await
    .unwrap();
}

fn object(name: &str, generation: i64) -> ObjectRecord {
    ObjectRecord {
        bucket: "b1".into(),
        name: name.into(),
        generation,
        metageneration: 1,
        size: 3,
        md5: [generation as u8; 16],
        crc32c: u32::MAX - generation as u32,
        content_type: "text/plain".into(),
        create_time: T,
        update_time: T,
        blob_key: format!("blob-{generation}"),
        attributes: Default::default(),
        component_count: None,
    }
}

/// A write by someone who may replace objects, in a project without a quota.
async fn put(
    s: &Store,
    o: &ObjectRecord,
    pre: Preconditions,
) -> Result<Option<String>, PutRefused> {
    s.put_object(o, pre, PutLimits::NONE).await.unwrap()
}

fn generation_match(g: i64) -> Preconditions {
    Preconditions {
        if_generation_match: Some(g),
        ..Default::default()
    }
}

async fn objects_obey_generation_preconditions_and_list_in_byte_order(b: &Backend) {
    let s = b.open().await;
    bucket(&s).await;
    assert_eq!(
        put(&s, &object("m", 1), generation_match(0)).await,
        Ok(None)
    );
    assert_eq!(
        put(&s, &object("m", 2), generation_match(0)).await,
        Err(PutRefused::Precondition(Some(1)))
    );
    assert_eq!(
        put(&s, &object("m", 2), generation_match(1)).await,
        Ok(Some("blob-1".into())),
        "the replaced generation's blob is handed back for deletion"
    );
    assert_eq!(s.get_object("b1", "m").await.unwrap(), Some(object("m", 2)));
    assert_eq!(
        s.delete_object("b1", "m", generation_match(1))
            .await
            .unwrap(),
        Err(Some(2))
    );
    assert!(
        s.get_object("b1", "m").await.unwrap().is_some(),
        "a refused delete deletes nothing"
    );
    // The replaced generation's blob is no object's any more: the orphan sweep may take it.
    let keys = ["blob-1", "blob-2", "blob-9"].map(String::from);
    assert_eq!(s.object_blobs_in_use(&keys).await.unwrap(), ["blob-2"]);
    for name in ["a/x", "a/é", "a/Z", "a_b", "B", "a/y"] {
        put(&s, &object(name, 5), Preconditions::default())
            .await
            .unwrap();
    }
    let names = async |prefix: &str, after: &str, limit| -> Vec<String> {
        s.list_objects("b1", prefix, after, limit)
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect()
    };
    assert_eq!(
        names("", "", 100).await,
        ["B", "a/Z", "a/x", "a/y", "a/é", "a_b", "m"]
    );
    assert_eq!(names("a/", "a/Z", 2).await, ["a/x", "a/y"]);
    assert_eq!(
        names("a_", "", 100).await,
        ["a_b"],
        "a prefix is literal, not a LIKE pattern"
    );
    assert!(
        matches!(s.delete_bucket("b1").await, Err(StoreError::NotEmpty(m)) if m.contains("7 objects"))
    );
}

async fn concurrent_writers_with_if_generation_match_never_both_win(b: &Backend) {
    bucket(&*b.open().await).await;
    for round in 0..3 {
        let name = format!("race-{round}");
        let results = race(b, 8, |i, s| {
            let name = name.clone();
            async move { put(&s, &object(&name, 10 + i as i64), generation_match(0)).await }
        })
        .await;
        let live = b
            .open()
            .await
            .get_object("b1", &format!("race-{round}"))
            .await
            .unwrap()
            .unwrap();
        // The losers are told the winner's generation.
        one_winner(&results, |e| {
            *e == PutRefused::Precondition(Some(live.generation))
        });
    }
}

async fn a_challenge_raced_by_two_replicas_is_consumed_once(b: &Backend) {
    let s = b.open().await;
    s.create_project(&project("alpha-1", 123456789012), &owner_policy(), None)
        .await
        .unwrap();
    s.create_challenge(&ChallengeRecord {
        name: "c1".into(),
        project_id: ProjectId::parse("alpha-1").unwrap(),
        nonce: vec![9; 32],
        create_time: at(100),
        expire_time: at(200),
    })
    .await
    .unwrap();
    let results = race(b, 8, |_, s| async move {
        s.consume_challenge("c1", at(150)).await.unwrap()
    })
    .await;
    one_winner(&results, |e| *e == ConsumeError::AlreadyUsed);
}

async fn concurrent_policy_writers_with_one_etag_never_both_win(b: &Backend) {
    let s = b.open().await;
    s.create_project(&project("alpha-1", 123456789012), &owner_policy(), None)
        .await
        .unwrap();
    let (read, _) = s.get_policy("projects/alpha-1").await.unwrap();
    let results = race(b, 6, |i, s| {
        let mut p = read.clone();
        p.add_binding(
            "roles/viewer",
            Member::parse(&format!("user:u{i}@x.com")).unwrap(),
        )
        .unwrap();
        async move {
            s.set_policy("projects/alpha-1", &p)
                .await
                .map_err(|e| e.to_string())
        }
    })
    .await;
    one_winner(&results, |e| e.contains("stale"));
}

async fn replicas_starting_together_agree_on_a_secret(b: &Backend) {
    let values = race(b, 6, |i, s| async move {
        s.secret_or_insert("hmac", &[i as u8; 32]).await.unwrap()
    })
    .await;
    assert!(values.iter().all(|v| *v == values[0]), "{values:?}");
    assert_eq!(
        b.open().await.secret("hmac").await.unwrap().as_ref(),
        Some(&values[0])
    );
}

async fn upload_sessions_advance_only_from_the_offset_they_hold(b: &Backend) {
    let s = b.open().await;
    bucket(&s).await;
    let session = UploadSession {
        attributes: Default::default(),
        upload_id: "u1".into(),
        bucket: "b1".into(),
        name: "big".into(),
        content_type: "application/octet-stream".into(),
        preconditions: generation_match(0),
        creator: Some(cloister_domain::Principal::User(
            Email::parse("creator@x.com").unwrap(),
        )),
        received: 0,
        create_time: at(100),
    };
    s.create_upload_session(&session).await.unwrap();
    let moved = race(b, 6, |_, s| async move {
        s.advance_upload_session("u1", 0, 1024, None)
            .await
            .unwrap()
            .unwrap()
    })
    .await;
    assert_eq!(
        moved.iter().filter(|m| **m).count(),
        1,
        "one chunk at offset 0, not several"
    );
    let got = s.get_upload_session("u1").await.unwrap().unwrap();
    assert_eq!(
        (got.received, got.preconditions, &got.creator),
        (1024, session.preconditions, &session.creator)
    );
    // Only sessions made before the cutoff are stale (the expiry sweep's question).
    assert!(s.stale_upload_sessions(at(100)).await.unwrap().is_empty());
    let stale = s.stale_upload_sessions(at(101)).await.unwrap();
    assert_eq!(stale.len(), 1);
    assert_eq!(
        (stale[0].upload_id.as_str(), stale[0].received),
        ("u1", 1024)
    );
    assert!(s.delete_upload_session("u1").await.unwrap());
    assert!(s.get_upload_session("u1").await.unwrap().is_none());

    s.create_repository(&repository()).await.unwrap();
    let image = image();
    s.create_registry_upload(&RegistryUpload {
        upload_id: "r1".into(),
        image: image.clone(),
        received: 0,
        chunks: 0,
        single_chunk_sha256: None,
        create_time: at(100),
    })
    .await
    .unwrap();
    assert!(
        s.advance_registry_upload("r1", 0, 10, "sha256:aa", None)
            .await
            .unwrap()
            .unwrap()
    );
    assert!(
        !s.advance_registry_upload("r1", 0, 10, "sha256:bb", None)
            .await
            .unwrap()
            .unwrap()
    );
    let one = s.get_registry_upload("r1").await.unwrap().unwrap();
    assert_eq!(
        (one.received, one.chunks, one.single_chunk_sha256.as_deref()),
        (10, 1, Some("sha256:aa"))
    );
    assert!(
        s.advance_registry_upload("r1", 10, 5, "sha256:cc", None)
            .await
            .unwrap()
            .unwrap()
    );
    let two = s.get_registry_upload("r1").await.unwrap().unwrap();
    assert_eq!(
        (two.received, two.chunks, two.single_chunk_sha256),
        (15, 2, None)
    );
    assert_eq!(s.stale_registry_uploads(at(101)).await.unwrap().len(), 1);
    assert!(s.stale_registry_uploads(at(100)).await.unwrap().is_empty());
}

/// A project with key ring `r` holding crypto key `k`, version 1 wrapped as `[1; 60]`.
async fn kms_key(s: &Store) -> (KmsKeyRing, KmsCryptoKey, KmsKeyVersion) {
    s.create_project(&project("alpha-1", 123456789012), &owner_policy(), None)
        .await
        .unwrap();
    let ring = KmsKeyRing {
        name: "projects/alpha-1/locations/global/keyRings/r".into(),
        project_id: ProjectId::parse("alpha-1").unwrap(),
        create_time: T,
    };
    s.create_key_ring(&ring).await.unwrap();
    let key = KmsCryptoKey {
        name: format!("{}/cryptoKeys/k", ring.name),
        key_ring: ring.name.clone(),
        purpose: KeyPurpose::EncryptDecrypt,
        primary_version: 1,
        create_time: T,
    };
    let first = KmsKeyVersion {
        key: key.name.clone(),
        version: 1,
        state: KeyVersionState::Enabled,
        wrapped_material: vec![1; 60],
        create_time: T,
    };
    s.create_crypto_key(&key, &first).await.unwrap();
    (ring, key, first)
}

async fn key_rotation_keeps_old_versions(b: &Backend) {
    let s = b.open().await;
    let (ring, key, first) = kms_key(&s).await;
    assert!(matches!(
        s.create_key_ring(&ring).await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(
        s.rotate_crypto_key(&key.name, vec![2; 60], T2)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        s.get_crypto_key(&key.name)
            .await
            .unwrap()
            .unwrap()
            .primary_version,
        2
    );
    assert_eq!(s.get_key_version(&key.name, 1).await.unwrap(), Some(first));
    assert_eq!(s.list_key_versions(&key.name).await.unwrap().len(), 2);
    assert!(matches!(
        s.rotate_crypto_key("projects/alpha-1/nope", vec![], T)
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        s.list_key_rings("projects/alpha-1/locations/global")
            .await
            .unwrap(),
        vec![ring.clone()]
    );
    assert!(
        s.list_key_rings("projects/alpha-1/locations/glob")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.get_policy(&key.name).await.unwrap().1.as_deref(),
        Some(ring.name.as_str())
    );
}

async fn destroying_a_key_version_erases_it_once_and_resealing_passes_it_by(b: &Backend) {
    let s = b.open().await;
    let (_, key, first) = kms_key(&s).await;
    s.rotate_crypto_key(&key.name, vec![2; 60], T2)
        .await
        .unwrap();
    assert!(s.destroy_key_version(&key.name, 1).await.unwrap());
    // Another replica sees it destroyed, and destroying again changes nothing.
    let other = b.open().await;
    assert!(!other.destroy_key_version(&key.name, 1).await.unwrap());
    let v1 = other.get_key_version(&key.name, 1).await.unwrap().unwrap();
    assert_eq!(
        v1,
        KmsKeyVersion {
            state: KeyVersionState::Destroyed,
            wrapped_material: Vec::new(),
            ..first
        },
        "the material is erased; the rest stays"
    );
    let v2 = s.get_key_version(&key.name, 2).await.unwrap().unwrap();
    assert_eq!(
        (v2.state, v2.wrapped_material),
        (KeyVersionState::Enabled, vec![2; 60])
    );
    assert!(matches!(
        s.destroy_key_version(&key.name, 9).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.destroy_key_version("projects/alpha-1/nope", 1).await,
        Err(StoreError::NotFound(_))
    ));
    // A destroyed version holds nothing sealed: KEK rotation passes it by.
    let seen = std::sync::Mutex::new(Vec::new());
    s.reseal_all(&|place, value| {
        seen.lock().unwrap().push(place.clone());
        Ok(value.to_vec())
    })
    .await
    .unwrap();
    assert_eq!(
        seen.into_inner().unwrap(),
        [SealedPlace::KmsKeyVersion {
            key: key.name.clone(),
            version: 2
        }]
    );
}

fn repository() -> RepositoryRecord {
    RepositoryRecord {
        project_id: ProjectId::parse("alpha-1").unwrap(),
        location: "us".into(),
        repository_id: "models".into(),
        format: "DOCKER".into(),
        description: String::new(),
        create_time: T,
    }
}

fn image() -> ImageRef {
    ImageRef {
        repository: repository().name(),
        image: "ml/app".into(),
    }
}

async fn manifests_need_their_content_and_tags_list_in_order(b: &Backend) {
    let s = b.open().await;
    s.create_project(&project("alpha-1", 123456789012), &owner_policy(), None)
        .await
        .unwrap();
    s.create_repository(&repository()).await.unwrap();
    let image = image();
    let manifest = ManifestRecord {
        digest: "sha256:m1".into(),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        content: b"{}".to_vec(),
        subject: None,
        artifact_type: None,
        create_time: T,
    };
    let refs = ManifestRefs {
        blobs: vec!["sha256:b1".into()],
        manifests: vec![],
    };
    assert_eq!(
        s.put_manifest(&image, &manifest, &refs, Some("v1"))
            .await
            .unwrap(),
        Err("sha256:b1".into())
    );
    assert!(
        s.get_manifest(&image, "sha256:m1").await.unwrap().is_none(),
        "refused means nothing stored"
    );
    let blob = RegistryBlob {
        digest: "sha256:b1".into(),
        size: 4,
        blob_key: "k1".into(),
    };
    assert_eq!(s.put_blob(&image, &blob, None).await.unwrap(), Ok(None));
    assert_eq!(
        s.put_blob(
            &image,
            &RegistryBlob {
                blob_key: "k2".into(),
                ..blob.clone()
            },
            None
        )
        .await
        .unwrap(),
        Ok(Some("k2".into())),
        "a second copy of a digest is handed back for deletion"
    );
    let other = ImageRef {
        image: "other".into(),
        ..image.clone()
    };
    assert!(
        s.linked_blob(&other, "sha256:b1").await.unwrap().is_none(),
        "blobs are linked per image"
    );
    assert_eq!(
        s.mount_blob(&other, &image, "sha256:b1", None)
            .await
            .unwrap(),
        Ok(Some(blob.clone()))
    );
    for tag in ["v1", "V2", "latest"] {
        assert_eq!(
            s.put_manifest(&image, &manifest, &refs, Some(tag))
                .await
                .unwrap(),
            Ok(())
        );
    }
    assert_eq!(
        s.list_tags(&image, None, 10).await.unwrap(),
        ["V2", "latest", "v1"]
    );
    assert_eq!(
        s.list_tags(&image, Some("V2"), 1).await.unwrap(),
        ["latest"]
    );
    assert_eq!(
        s.resolve_tag(&image, "v1").await.unwrap().as_deref(),
        Some("sha256:m1")
    );
    let versions = s.list_image_versions(&repository().name()).await.unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(
        (versions[0].size, versions[0].tags.clone()),
        (2, vec!["V2".into(), "latest".into(), "v1".into()])
    );
    assert!(s.delete_manifest(&image, "sha256:m1").await.unwrap());
    assert!(
        s.resolve_tag(&image, "v1").await.unwrap().is_none(),
        "tags go with their manifest"
    );
    assert_eq!(
        s.delete_repository(&repository().name()).await.unwrap(),
        ["k1"]
    );
}

async fn replicas_creating_at_once_never_pass_a_projects_instance_quota(b: &Backend) {
    let s = b.open().await;
    for (id, number) in [("alpha-1", 123456789012), ("beta-2", 223456789012)] {
        s.create_project(&project(id, number), &owner_policy(), None)
            .await
            .unwrap();
    }
    let instance = |project: &str, i: usize| InstanceRecord {
        project_id: ProjectId::parse(project).unwrap(),
        zone: "us-west1-b".into(),
        name: format!("vm-{i}"),
        id: 1000 + i as u64,
        service_account: format!("sa@{project}.iam.gserviceaccount.com"),
        metadata: BTreeMap::new(),
        confidential_type: ConfidentialType::Vtpm,
        status: InstanceStatus::Provisioning,
        create_time: T,
    };
    // Twelve creates at once on two replicas, under a quota of five: five are created.
    let results = race(b, 12, |i, s| {
        let record = instance("alpha-1", i);
        async move { s.create_instance(&record, Some(5)).await }
    })
    .await;
    let over = |e: &StoreError| {
        matches!(e, StoreError::QuotaExceeded { kind: "instances", scope, limit: 5 }
            if scope == "project alpha-1")
    };
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        5,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().is_ok() || r.as_ref().is_err_and(over)),
        "{results:?}"
    );
    let alpha = ProjectId::parse("alpha-1").unwrap();
    assert_eq!(s.list_instances(&alpha, "-").await.unwrap().len(), 5);
    // Another project's quota is its own; a deleted instance frees its place.
    s.create_instance(&instance("beta-2", 500), Some(5))
        .await
        .unwrap();
    let first = s.list_instances(&alpha, "-").await.unwrap().remove(0);
    assert!(s.delete_instance(&first.resource_name()).await.unwrap());
    s.create_instance(&instance("alpha-1", 99), Some(5))
        .await
        .unwrap();
    assert!(matches!(
        s.create_instance(&instance("alpha-1", 100), Some(5)).await,
        Err(StoreError::QuotaExceeded { .. })
    ));
    // No quota: no count.
    s.create_instance(&instance("alpha-1", 100), None)
        .await
        .unwrap();
}

async fn users_creating_at_once_never_pass_their_project_quota(b: &Backend) {
    let s = b.open().await;
    let by = |creator: &str, i: u64| ProjectRecord {
        creator: creator.into(),
        ..project(
            &format!("p-{creator}-{i}").replace(['@', '.', ':'], "-"),
            100000000000 + i,
        )
    };
    // Twelve creates at once by one user on two replicas, under a quota of five: five made.
    let results = race(b, 12, |i, s| {
        let record = by("user:a@x.com", i as u64);
        async move { s.create_project(&record, &owner_policy(), Some(5)).await }
    })
    .await;
    let over = |e: &StoreError| {
        matches!(e, StoreError::QuotaExceeded { kind: "projects", scope, limit: 5 }
            if scope == "user:a@x.com")
    };
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        5,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().is_ok() || r.as_ref().is_err_and(over)),
        "{results:?}"
    );
    assert_eq!(s.list_projects().await.unwrap().len(), 5);
    // Another user's quota is their own; a deleted project frees its place (Cloister's
    // deletion is at once, Google's after 30 days' pending).
    s.create_project(&by("user:b@x.com", 500), &owner_policy(), Some(5))
        .await
        .unwrap();
    let mine = s
        .list_projects()
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.creator == "user:a@x.com")
        .unwrap();
    s.delete_project(&mine.id, "user:a@x.com").await.unwrap();
    s.create_project(&by("user:a@x.com", 99), &owner_policy(), Some(5))
        .await
        .unwrap();
    assert!(matches!(
        s.create_project(&by("user:a@x.com", 100), &owner_policy(), Some(5))
            .await,
        Err(StoreError::QuotaExceeded { .. })
    ));
}

async fn instances_round_trip_and_filter_by_zone(b: &Backend) {
    let s = b.open().await;
    s.create_project(&project("alpha-1", 123456789012), &owner_policy(), None)
        .await
        .unwrap();
    let instance = |zone: &str, name: &str, id| InstanceRecord {
        project_id: ProjectId::parse("alpha-1").unwrap(),
        zone: zone.into(),
        name: name.into(),
        id,
        service_account: "sa@alpha-1.iam.gserviceaccount.com".into(),
        metadata: BTreeMap::from([("tee-image-reference".into(), "r/i:t".into())]),
        confidential_type: ConfidentialType::Vtpm,
        status: InstanceStatus::Running,
        create_time: T,
    };
    let a = instance("us-west1-b", "a", u64::MAX - 1);
    s.create_instance(&a, None).await.unwrap();
    s.create_instance(&instance("europe-west4-a", "b", 7), None)
        .await
        .unwrap();
    assert!(matches!(
        s.create_instance(&a, None).await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(
        s.get_instance(&a.resource_name()).await.unwrap(),
        Some(a.clone()),
        "a 64-bit id survives"
    );
    let alpha = ProjectId::parse("alpha-1").unwrap();
    assert_eq!(s.list_instances(&alpha, "-").await.unwrap().len(), 2);
    assert_eq!(
        s.list_instances(&alpha, "us-west1-b").await.unwrap(),
        vec![a.clone()]
    );
    assert!(
        s.set_instance_status(&a.resource_name(), InstanceStatus::Terminated)
            .await
            .unwrap()
    );
    assert!(s.delete_instance(&a.resource_name()).await.unwrap());
    assert!(
        !s.set_instance_status(&a.resource_name(), InstanceStatus::Running)
            .await
            .unwrap()
    );
}

async fn a_lapsed_replica_lease_terminates_its_instances_once(b: &Backend) {
    let s = b.open().await;
    s.create_project(&project("alpha-1", 123456789012), &owner_policy(), None)
        .await
        .unwrap();
    let instance = |name: &str, id, status| InstanceRecord {
        project_id: ProjectId::parse("alpha-1").unwrap(),
        zone: "us-west1-b".into(),
        name: name.into(),
        id,
        service_account: "sa@alpha-1.iam.gserviceaccount.com".into(),
        metadata: BTreeMap::new(),
        confidential_type: ConfidentialType::Vtpm,
        status,
        create_time: T,
    };
    for (name, id, status) in [
        ("on-a", u64::MAX - 3, InstanceStatus::Running),
        ("held-on-a", 11, InstanceStatus::Suspended),
        ("ended-on-a", 12, InstanceStatus::Terminated),
        ("on-b", 21, InstanceStatus::Running),
        ("claimed-by-a", 31, InstanceStatus::Provisioning),
    ] {
        s.create_instance(&instance(name, id, status), None)
            .await
            .unwrap();
    }
    // A claimed this one and died before its lease named it: the takeover finds it by its
    // placement.
    let offer = ReplicaOffer {
        replica: "a",
        types: &[ConfidentialType::Vtpm],
        max_instances: 10,
    };
    let claimed = s.claim_instance(offer, None).await.unwrap().unwrap();
    assert_eq!(claimed.name, "claimed-by-a");
    let status = async |name: &str| {
        s.get_instance(&format!(
            "projects/alpha-1/zones/us-west1-b/instances/{name}"
        ))
        .await
        .unwrap()
        .unwrap()
        .status
    };
    // 13 was deleted since A's last renewal: nothing to mark.
    assert!(
        !s.renew_replica_lease("a", at(100), &[u64::MAX - 3, 11, 12, 13], &[])
            .await
            .unwrap(),
        "a first renewal held no lease"
    );
    assert!(
        s.renew_replica_lease("a", at(110), &[u64::MAX - 3, 11, 12, 13], &[])
            .await
            .unwrap()
    );
    assert!(
        !s.renew_replica_lease("b", at(200), &[21], &[])
            .await
            .unwrap()
    );
    assert_eq!(
        s.replica_leases().await.unwrap(),
        [("a".to_owned(), at(110)), ("b".to_owned(), at(200))]
    );

    assert_eq!(
        s.expire_replica_leases(at(110)).await.unwrap(),
        Vec::<String>::new(),
        "a lease is good until it expires"
    );
    assert_eq!(status("on-a").await, InstanceStatus::Running);
    // A stopped renewing; B (another handle) takes over A's lapsed lease, and only A's.
    let expired: Vec<Vec<String>> = race(b, 4, |_, s| async move {
        s.expire_replica_leases(at(111)).await.unwrap()
    })
    .await;
    let mut all: Vec<String> = expired.concat();
    all.sort();
    assert_eq!(
        all,
        [
            "projects/alpha-1/zones/us-west1-b/instances/claimed-by-a",
            "projects/alpha-1/zones/us-west1-b/instances/held-on-a",
            "projects/alpha-1/zones/us-west1-b/instances/on-a",
        ],
        "each of A's live instances is reported by exactly one replica: {expired:?}"
    );
    assert_eq!(status("on-a").await, InstanceStatus::Terminated);
    assert_eq!(status("held-on-a").await, InstanceStatus::Terminated);
    let placed = s
        .instance_placement("projects/alpha-1/zones/us-west1-b/instances/claimed-by-a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (placed.placement, placed.replica),
        (Placement::Released, None),
        "nothing stays placed on a replica that is gone"
    );
    assert_eq!(
        status("on-b").await,
        InstanceStatus::Running,
        "B's lease has not lapsed"
    );
    assert_eq!(
        s.replica_leases().await.unwrap(),
        [("b".to_owned(), at(200))]
    );
    // A comes back: its renewal says its lease was taken over.
    assert!(
        !s.renew_replica_lease("a", at(300), &[u64::MAX - 3], &[])
            .await
            .unwrap()
    );
    assert_eq!(
        s.expire_replica_leases(at(250)).await.unwrap(),
        ["projects/alpha-1/zones/us-west1-b/instances/on-b"]
    );
    assert_eq!(
        b.open().await.expire_replica_leases(at(301)).await.unwrap(),
        Vec::<String>::new(),
        "an instance already TERMINATED is not reported again"
    );
}

/// Placement: replicas claiming at once (two handles, several claims each) never claim one
/// instance twice, take only the types they offer, and stop at their maximum; an instance
/// that ends makes room; a waiting instance's message goes when it is placed.
async fn replicas_racing_for_waiting_instances_claim_each_once_within_their_limits(b: &Backend) {
    let s = b.open().await;
    s.create_project(&project("alpha-1", 123456789012), &owner_policy(), None)
        .await
        .unwrap();
    let instance = |name: String, id, kind| InstanceRecord {
        project_id: ProjectId::parse("alpha-1").unwrap(),
        zone: "us-west1-b".into(),
        name,
        id,
        service_account: "sa@alpha-1.iam.gserviceaccount.com".into(),
        metadata: BTreeMap::new(),
        confidential_type: kind,
        status: InstanceStatus::Provisioning,
        create_time: T,
    };
    let name = |n: &str| format!("projects/alpha-1/zones/us-west1-b/instances/{n}");
    for i in 0..16u64 {
        s.create_instance(
            &instance(format!("v{i}"), 100 + i, ConfidentialType::Vtpm),
            None,
        )
        .await
        .unwrap();
    }
    s.create_instance(&instance("t0".into(), 200, ConfidentialType::Tdx), None)
        .await
        .unwrap();
    assert!(
        s.set_waiting_message(&name("t0"), "not enough resources")
            .await
            .unwrap()
    );
    // Both run VTPM and INSECURE, A at most 5 and B at most 11: together exactly the 16, so
    // each must stop at its own maximum whichever claims first (with no limit on B, B could
    // take all 16 before A's first claim, as a loaded CI machine once showed).
    let offer = |i: usize| match i % 2 {
        0 => ("a", 5),
        _ => ("b", 11),
    };
    let claims: Vec<Vec<(String, String)>> = race(b, 6, |i, s| async move {
        let (replica, max_instances) = offer(i);
        let offer = ReplicaOffer {
            replica,
            types: &[ConfidentialType::Insecure, ConfidentialType::Vtpm],
            max_instances,
        };
        let mut mine = Vec::new();
        // Bounded: a claim that takes a placed instance again shows as a duplicate, not a hang.
        for _ in 0..=16 {
            match s.claim_instance(offer, None).await.unwrap() {
                Some(claimed) => mine.push((replica.to_owned(), claimed.name)),
                None => break,
            }
        }
        mine
    })
    .await;
    let mut claimed: Vec<(String, String)> = claims.concat();
    claimed.sort_by(|x, y| x.1.cmp(&y.1));
    let names: Vec<&str> = claimed.iter().map(|(_, n)| n.as_str()).collect();
    let mut expected: Vec<String> = (0..16).map(|i| format!("v{i}")).collect();
    expected.sort();
    assert_eq!(
        names, expected,
        "each VTPM instance claimed once: {claims:?}"
    );
    let on_a = claimed.iter().filter(|(r, _)| r == "a").count();
    assert_eq!(on_a, 5, "each replica stops at its maximum: {claims:?}");
    for (replica, n) in &claimed {
        let placed = s.instance_placement(&name(n)).await.unwrap().unwrap();
        assert_eq!(
            (placed.placement, placed.replica.as_deref()),
            (Placement::Placed, Some(replica.as_str()))
        );
    }
    let tdx = s.instance_placement(&name("t0")).await.unwrap().unwrap();
    assert_eq!(
        (tdx.placement, tdx.status_message.as_deref()),
        (Placement::Waiting, Some("not enough resources")),
        "no replica offers TDX: it waits, saying why"
    );

    // A is full; one of its instances ends, and A has room for one more.
    let full = ReplicaOffer {
        replica: "a",
        types: &[ConfidentialType::Vtpm, ConfidentialType::Tdx],
        max_instances: on_a as u32,
    };
    assert_eq!(
        s.claim_instance(full, None).await.unwrap(),
        None,
        "A is full"
    );
    let a_instance = &claimed.iter().find(|(r, _)| r == "a").unwrap().1;
    s.set_instance_status(&name(a_instance), InstanceStatus::Terminated)
        .await
        .unwrap();
    // Only the named instance, when one is named.
    assert_eq!(
        s.claim_instance(full, Some(&name("v0"))).await.unwrap(),
        None,
        "a placed instance is not claimed again"
    );
    let t0 = s.claim_instance(full, Some(&name("t0"))).await.unwrap();
    assert_eq!(t0.map(|i| i.name), Some("t0".to_owned()));
    let tdx = s.instance_placement(&name("t0")).await.unwrap().unwrap();
    assert_eq!(tdx.status_message, None, "placed: no longer waiting");
    assert!(
        !s.set_waiting_message(&name("t0"), "late").await.unwrap(),
        "a placed instance is not said to wait"
    );

    // What live replicas offer decides whether a type can run at all.
    s.renew_replica_lease("a", at(100), &[], &[ConfidentialType::Vtpm])
        .await
        .unwrap();
    assert!(
        s.replica_offers(ConfidentialType::Vtpm, at(100))
            .await
            .unwrap()
    );
    assert!(
        !s.replica_offers(ConfidentialType::Tdx, at(100))
            .await
            .unwrap()
    );
    assert!(
        !s.replica_offers(ConfidentialType::Vtpm, at(101))
            .await
            .unwrap(),
        "a lapsed lease offers nothing"
    );
    // An instance no replica runs any more is ended and released.
    assert!(s.release_instance(&name("t0"), Some("gone")).await.unwrap());
    let t0 = s.instance_placement(&name("t0")).await.unwrap().unwrap();
    assert_eq!(
        (t0.placement, t0.replica, t0.status_message.as_deref()),
        (Placement::Released, None, Some("gone"))
    );
    // Started again: waiting like a new one; only a TERMINATED instance restarts.
    assert!(s.restart_instance(&name("t0")).await.unwrap());
    assert!(!s.restart_instance(&name("t0")).await.unwrap());
    let t0 = s.instance_placement(&name("t0")).await.unwrap().unwrap();
    assert_eq!(
        (t0.placement, t0.status_message),
        (Placement::Waiting, None)
    );
    // A replica's status writes reach only the instances placed on it.
    let (replica, v) = &claimed[0];
    let other = if replica == "a" { "b" } else { "a" };
    let v = name(v);
    let set = |r| s.set_placed_instance_status(&v, r, InstanceStatus::Running);
    assert!(!set(other).await.unwrap());
    assert!(set(replica).await.unwrap());
}

async fn resealing_replaces_every_sealed_value_or_none(b: &Backend) {
    let s = b.open().await;
    let (_, key, _) = kms_key(&s).await;
    s.rotate_crypto_key(&key.name, vec![2; 60], T2)
        .await
        .unwrap();
    let signing = |wrapped: u8| StoredSigningKey {
        created: 7,
        wrapped: vec![wrapped; 40],
    };
    s.add_signing_key("http://issuer.test", &signing(3))
        .await
        .unwrap();
    s.secret_or_insert("access-token-hmac", &[4; 32])
        .await
        .unwrap();
    s.secret_or_insert("kek-check", &[5; 32]).await.unwrap();
    let snapshot = async |s: &Store| {
        (
            s.list_signing_keys("http://issuer.test").await.unwrap(),
            s.secret("access-token-hmac").await.unwrap(),
            s.secret("kek-check").await.unwrap(),
            s.list_key_versions(&key.name).await.unwrap(),
        )
    };
    let before = snapshot(&s).await;

    // A value that cannot be resealed (sealed by another KEK, say) stops the whole rotation.
    let err = b
        .open()
        .await
        .reseal_all(&|place, value| match place {
            SealedPlace::KmsKeyVersion { version: 2, .. } => Err("does not open".into()),
            _ => Ok(value.iter().map(|b| b + 10).collect()),
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}/cryptoKeyVersions/2: does not open; nothing was changed",
            key.name
        )
    );
    assert_eq!(snapshot(&s).await, before, "nothing changed");

    // Every value is handed over with its place (whose name is its AAD) and replaced.
    let seen = std::sync::Mutex::new(Vec::new());
    let count = b
        .open()
        .await
        .reseal_all(&|place, value| {
            seen.lock().unwrap().push(place.aad().to_owned());
            Ok(value.iter().map(|b| b + 10).collect())
        })
        .await
        .unwrap();
    assert_eq!(count, 5);
    let mut seen = seen.into_inner().unwrap();
    seen.sort();
    assert_eq!(
        seen,
        [
            "access-token-hmac",
            "http://issuer.test",
            "kek-check",
            key.name.as_str(),
            key.name.as_str(),
        ]
    );
    let (keys, token_key, check, versions) = snapshot(&s).await;
    assert_eq!(keys, [signing(13)]);
    assert_eq!(token_key, Some(vec![14; 32]));
    assert_eq!(check, Some(vec![15; 32]));
    assert_eq!(
        versions
            .iter()
            .map(|v| (v.version, v.wrapped_material.clone()))
            .collect::<Vec<_>>(),
        [(1, vec![11; 60]), (2, vec![12; 60])]
    );
}

async fn a_project_is_deleted_only_when_empty_and_its_id_and_number_stay_taken(b: &Backend) {
    let s = b.open().await;
    bucket(&s).await;
    let alpha = ProjectId::parse("alpha-1").unwrap();
    let sa = ServiceAccountRecord {
        email: Email::parse("sa-1@alpha-1.iam.gserviceaccount.com").unwrap(),
        project_id: alpha.clone(),
        unique_id: "100000000000000000001".into(),
        display_name: "d".into(),
        description: String::new(),
        disabled: false,
        create_time: T,
    };
    s.create_service_account(&sa).await.unwrap();
    let pool = "projects/123456789012/locations/global/workloadIdentityPools/pool-1";
    let provider = format!("{pool}/providers/prov-1");
    for name in [pool, provider.as_str()] {
        s.create_federation(&FederationRecord {
            name: name.into(),
            project_id: alpha.clone(),
            resource: serde_json::json!({"name": name}),
            etag: String::new(),
        })
        .await
        .unwrap();
    }
    s.create_repository(&repository()).await.unwrap();
    let instance = InstanceRecord {
        project_id: alpha.clone(),
        zone: "us-west1-b".into(),
        name: "vm".into(),
        id: 7,
        service_account: sa.email.as_str().into(),
        metadata: BTreeMap::new(),
        confidential_type: ConfidentialType::Vtpm,
        status: InstanceStatus::Terminated,
        create_time: T,
    };
    s.create_instance(&instance, None).await.unwrap();
    // A challenge is no resource of the project's: it goes with the project.
    s.create_challenge(&ChallengeRecord {
        name: "c1".into(),
        project_id: alpha.clone(),
        nonce: vec![9; 32],
        create_time: at(100),
        expire_time: at(200),
    })
    .await
    .unwrap();

    // Everything left is named (a pool, not its providers); nothing is deleted.
    let Err(StoreError::NotEmpty(left)) = s.delete_project(&alpha, "user:a@x.com").await else {
        panic!("a project holding resources was deleted");
    };
    assert_eq!(
        left,
        format!(
            "project alpha-1 still holds buckets b1; instances {}; repositories {}; service accounts {}; workload identity pools {pool}",
            instance.resource_name(),
            repository().name(),
            sa.email
        )
    );
    assert!(s.get_project(&alpha).await.unwrap().is_some());
    s.delete_bucket("b1").await.unwrap();
    s.delete_service_account(&sa.email).await.unwrap();
    s.delete_federation(&provider).await.unwrap();
    s.delete_federation(pool).await.unwrap();
    s.delete_repository(&repository().name()).await.unwrap();
    s.delete_instance(&instance.resource_name()).await.unwrap();

    s.delete_project(&alpha, "user:a@x.com").await.unwrap();
    assert!(s.get_project(&alpha).await.unwrap().is_none());
    // A creation that raced the deletion (its caller saw the project) finds it gone: NotFound
    // for the API to answer 404, never a database error.
    let gone = [
        s.create_service_account(&sa).await.err(),
        s.create_repository(&repository()).await.err(),
        s.create_instance(&instance, None).await.err(),
        s.create_key_ring(&KmsKeyRing {
            name: "projects/alpha-1/locations/global/keyRings/late".into(),
            project_id: alpha.clone(),
            create_time: T,
        })
        .await
        .err(),
    ];
    for refusal in gone {
        assert!(
            matches!(&refusal, Some(StoreError::NotFound(what)) if what.starts_with("the project or parent resource of")),
            "{refusal:?}"
        );
    }
    assert_eq!(s.get_policy("projects/alpha-1").await.unwrap().1, None);
    assert!(
        s.get_policy("projects/alpha-1")
            .await
            .unwrap()
            .0
            .bindings
            .is_empty()
    );
    assert!(matches!(
        s.delete_project(&alpha, "user:a@x.com").await,
        Err(StoreError::NotFound(_))
    ));
    // Its id and its number are never another project's.
    let Err(StoreError::AlreadyExists(what)) = s
        .create_project(&project("alpha-1", 323456789012), &owner_policy(), None)
        .await
    else {
        panic!("a deleted project's id was reused");
    };
    assert!(what.starts_with(cloister_store::DELETED_PROJECT), "{what}");
    let Err(StoreError::AlreadyExists(what)) = b
        .open()
        .await
        .create_project(&project("gamma-33", 123456789012), &owner_policy(), None)
        .await
    else {
        panic!("a deleted project's number was reused");
    };
    assert!(what.starts_with("project number"), "{what}");

    // A key ring (never deletable, as in Google) keeps its project.
    s.create_project(&project("beta-22", 423456789012), &owner_policy(), None)
        .await
        .unwrap();
    let beta = ProjectId::parse("beta-22").unwrap();
    s.create_key_ring(&KmsKeyRing {
        name: "projects/beta-22/locations/global/keyRings/r".into(),
        project_id: beta.clone(),
        create_time: T,
    })
    .await
    .unwrap();
    let Err(StoreError::NotEmpty(left)) = s.delete_project(&beta, "user:a@x.com").await else {
        panic!("a project holding a key ring was deleted");
    };
    assert_eq!(
        left,
        "project beta-22 still holds key rings projects/beta-22/locations/global/keyRings/r"
    );
}

fn project(id: &str, number: u64) -> ProjectRecord {
    ProjectRecord {
        id: ProjectId::parse(id).unwrap(),
        number: ProjectNumber(number),
        display_name: id.into(),
        create_time: T,
        creator: "user:a@x.com".into(),
    }
}

fn owner_policy() -> Policy {
    let mut p = Policy::default();
    p.add_binding("roles/owner", Member::parse("user:a@x.com").unwrap())
        .unwrap();
    p
}

async fn projects_and_policies_survive_reopen(b: &Backend) {
    b.open()
        .await
        .create_project(&project("alpha-1", 123456789012), &owner_policy(), None)
        .await
        .unwrap();
    let s = b.open().await;
    let p = s
        .get_project(&ProjectId::parse("alpha-1").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.number, ProjectNumber(123456789012));
    let (policy, parent) = s.get_policy("projects/alpha-1").await.unwrap();
    assert_eq!(policy.bindings, owner_policy().bindings);
    assert!(parent.is_none());
    assert!(!policy.etag.is_empty());
}

async fn duplicate_project_ids_and_numbers_are_refused(b: &Backend) {
    let s = b.open().await;
    s.create_project(&project("alpha-1", 123456789012), &owner_policy(), None)
        .await
        .unwrap();
    let e = s
        .create_project(&project("alpha-1", 223456789012), &owner_policy(), None)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("project alpha-1 already exists"),
        "{e}"
    );
    let e = s
        .create_project(&project("beta-22", 123456789012), &owner_policy(), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("project number"), "{e}");
    assert!(
        s.get_project(&ProjectId::parse("beta-22").unwrap())
            .await
            .unwrap()
            .is_none()
    );
}

async fn a_stale_etag_is_refused_and_changes_nothing(b: &Backend) {
    let s = b.open().await;
    s.create_project(&project("alpha-1", 123456789012), &owner_policy(), None)
        .await
        .unwrap();
    let (mut first, _) = s.get_policy("projects/alpha-1").await.unwrap();
    let (mut second, _) = s.get_policy("projects/alpha-1").await.unwrap();
    first
        .add_binding("roles/viewer", Member::parse("user:b@x.com").unwrap())
        .unwrap();
    let stored = s.set_policy("projects/alpha-1", &first).await.unwrap();
    second
        .add_binding("roles/viewer", Member::parse("user:c@x.com").unwrap())
        .unwrap();
    assert!(matches!(
        s.set_policy("projects/alpha-1", &second).await,
        Err(StoreError::StaleEtag { .. })
    ));
    let (now, _) = s.get_policy("projects/alpha-1").await.unwrap();
    assert_eq!(now, stored);
    assert!(matches!(
        s.set_policy("projects/nope-123", &first).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn the_audit_log_is_append_only_and_filterable(b: &Backend) {
    let s = b.open().await;
    for (i, (res, decision)) in [
        ("projects/a-proj", Decision::Allow),
        ("projects/a-proj/x/y", Decision::Deny),
        ("projects/a-proj2", Decision::Deny),
        ("projects/_/buckets/b1", Decision::Allow),
    ]
    .into_iter()
    .enumerate()
    {
        s.append_audit(&[AuditEntry {
            id: 0,
            time: format!("2026-01-01T00:00:0{i}Z"),
            principal: "user:b@x.com".into(),
            permission: "resourcemanager.projects.get".into(),
            resource: res.into(),
            decision,
            reason: "r".into(),
            project: Some(
                if res.contains("a-proj2") {
                    "projects/a-proj2"
                } else {
                    "projects/a-proj"
                }
                .into(),
            ),
            details: None,
            subject: None,
        }])
        .await
        .unwrap();
    }
    let under = |p: &str| AuditFilter {
        resource_prefix: Some(p.into()),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(
        s.list_audit(&under("projects/a-proj")).await.unwrap().len(),
        3,
        "prefix is per path segment; resources named elsewhere match by owning project"
    );
    let denials = AuditFilter {
        decision: Some(Decision::Deny),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(s.list_audit(&denials).await.unwrap().len(), 2);
    for sql in [
        "UPDATE audit_log SET decision = 'allow'",
        "DELETE FROM audit_log",
    ] {
        let e = b.execute(sql).await.unwrap_err();
        assert!(e.contains("append-only"), "{sql}: {e}");
    }
    assert_eq!(s.list_audit(&denials).await.unwrap().len(), 2);

    // An exchange's details come back as they went in, found by the id a listing shows.
    let details = AuditDetails::TokenExchange(ExchangeDetails {
        provider: "projects/1/locations/global/workloadIdentityPools/p/providers/v".into(),
        failure: None,
        attribute_condition: Some("assertion.a == 'x'".into()),
        clauses: vec![ClauseVerdict {
            clause: "assertion.a == 'x'".into(),
            outcome: ClauseOutcome::Fail,
            detail: None,
            compared: vec![ComparedValue {
                expression: "assertion.a".into(),
                value: serde_json::json!("y"),
            }],
        }],
        claims: Some(
            serde_json::json!({"iss": "https://c", "sub": "https://c/instances/vm", "a": "y"}),
        ),
    });
    let entry = AuditEntry {
        id: 0,
        time: "2026-01-01T00:00:09Z".into(),
        principal: "subject:s".into(),
        permission: "sts.googleapis.com/token.exchange".into(),
        resource: "projects/a-proj/locations/global/workloadIdentityPools/p/providers/v".into(),
        decision: Decision::Deny,
        reason: "attribute condition is false".into(),
        project: Some("projects/a-proj".into()),
        subject: details.subject("https://c"),
        details: Some(details),
    };
    s.append_audit(std::slice::from_ref(&entry)).await.unwrap();
    let listed = s.list_audit(&denials).await.unwrap();
    let id = listed.last().unwrap().id;
    assert_eq!(
        s.get_audit(id).await.unwrap(),
        Some(AuditEntry {
            id,
            ..entry.clone()
        })
    );
    assert_eq!(s.get_audit(id + 1).await.unwrap(), None);
    // An instance's entries are found by its subject, and a time window bounds a listing.
    let about = |subject: &str| AuditFilter {
        subject: Some(subject.into()),
        limit: 100,
        ..Default::default()
    };
    let found = s
        .list_audit(&about("https://c/instances/vm"))
        .await
        .unwrap();
    assert_eq!(found, vec![AuditEntry { id, ..entry }]);
    assert!(
        s.list_audit(&about("https://c/instances/other"))
            .await
            .unwrap()
            .is_empty()
    );
    let window = |since: &str, before: &str| AuditFilter {
        since: Some(since.into()),
        before: Some(before.into()),
        limit: 100,
        ..Default::default()
    };
    let times: Vec<String> = s
        .list_audit(&window("2026-01-01T00:00:01Z", "2026-01-01T00:00:03Z"))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.time)
        .collect();
    assert_eq!(times, ["2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z"]);
}

async fn service_accounts_inherit_from_their_project_and_vanish_with_their_policy(b: &Backend) {
    let s = b.open().await;
    s.create_project(&project("alpha-1", 123456789012), &owner_policy(), None)
        .await
        .unwrap();
    let sa = ServiceAccountRecord {
        email: Email::parse("sa-1@alpha-1.iam.gserviceaccount.com").unwrap(),
        project_id: ProjectId::parse("alpha-1").unwrap(),
        unique_id: "100000000000000000001".into(),
        display_name: "d".into(),
        description: String::new(),
        disabled: false,
        create_time: T,
    };
    s.create_service_account(&sa).await.unwrap();
    assert!(matches!(
        s.create_service_account(&sa).await,
        Err(StoreError::AlreadyExists(_))
    ));
    let (policy, parent) = s.get_policy(&sa.resource_name()).await.unwrap();
    assert!(policy.bindings.is_empty());
    assert_eq!(parent.as_deref(), Some("projects/alpha-1"));
    assert_eq!(
        s.list_service_accounts(&sa.project_id).await.unwrap(),
        vec![sa.clone()]
    );
    assert!(s.delete_service_account(&sa.email).await.unwrap());
    assert!(!s.delete_service_account(&sa.email).await.unwrap());
    assert_eq!(s.get_policy(&sa.resource_name()).await.unwrap().1, None);
}

async fn providers_need_their_pool_and_updates_compare_etags(b: &Backend) {
    let s = b.open().await;
    s.create_project(&project("alpha-1", 123456789012), &owner_policy(), None)
        .await
        .unwrap();
    let pool = "projects/123456789012/locations/global/workloadIdentityPools/pool-1";
    let provider = format!("{pool}/providers/prov-1");
    let rec = |name: &str| FederationRecord {
        name: name.into(),
        project_id: ProjectId::parse("alpha-1").unwrap(),
        resource: serde_json::json!({"name": name}),
        etag: "e0".into(),
    };
    assert!(matches!(
        s.create_federation(&rec(&provider)).await,
        Err(StoreError::NotFound(_))
    ));
    s.create_federation(&rec(pool)).await.unwrap();
    s.create_federation(&rec(&provider)).await.unwrap();
    assert_eq!(
        s.list_federation("projects/123456789012/locations/global")
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(s.list_federation(pool).await.unwrap().len(), 1);
    let e1 = s
        .update_federation(&provider, &serde_json::json!({"x": 1}), "e0")
        .await
        .unwrap();
    assert!(matches!(
        s.update_federation(&provider, &serde_json::json!({"x": 2}), "e0")
            .await,
        Err(StoreError::StaleEtag { .. })
    ));
    assert_eq!(s.get_federation(&provider).await.unwrap().unwrap().etag, e1);
    assert!(s.delete_federation(pool).await.unwrap());
    assert!(
        s.get_federation(&provider).await.unwrap().is_none(),
        "providers go with their pool"
    );
}

async fn a_challenge_is_consumed_once_and_never_after_it_expires(b: &Backend) {
    let s = b.open().await;
    s.create_project(&project("alpha-1", 123456789012), &owner_policy(), None)
        .await
        .unwrap();
    let c = |name: &str, expire_time| ChallengeRecord {
        name: name.into(),
        project_id: ProjectId::parse("alpha-1").unwrap(),
        nonce: vec![1; 32],
        create_time: at(100),
        expire_time,
    };
    s.create_challenge(&c("c1", at(200))).await.unwrap();
    s.create_challenge(&c("c2", at(150))).await.unwrap();
    assert_eq!(
        s.consume_challenge("c1", at(120)).await.unwrap(),
        Ok(c("c1", at(200)))
    );
    assert_eq!(
        s.consume_challenge("c1", at(121)).await.unwrap(),
        Err(ConsumeError::AlreadyUsed)
    );
    assert_eq!(
        s.consume_challenge("c2", at(150)).await.unwrap(),
        Err(ConsumeError::Expired {
            expire_time: at(150)
        })
    );
    assert_eq!(
        s.consume_challenge("c3", at(120)).await.unwrap(),
        Err(ConsumeError::NotFound)
    );
}

async fn users_and_credentials_round_trip(b: &Backend) {
    let s = b.open().await;
    let email = Email::parse("a@x.com").unwrap();
    let user = UserRecord {
        email: email.clone(),
        display_name: "A".into(),
        admin: true,
        create_time: T,
    };
    s.create_user(&user).await.unwrap();
    assert!(matches!(
        s.create_user(&user).await,
        Err(StoreError::AlreadyExists(_))
    ));
    let cred = CredentialRecord {
        id: "c1".into(),
        user: email.clone(),
        secret_sha256: [7; 32],
        create_time: T,
    };
    s.create_credential(&cred).await.unwrap();
    assert_eq!(s.get_credential("c1").await.unwrap().unwrap(), cred);
    assert!(s.get_credential("c2").await.unwrap().is_none());
    assert_eq!(s.list_users().await.unwrap(), vec![user]);
}

async fn keys_are_listed_oldest_first_and_secrets_keep_the_first_value(b: &Backend) {
    let store = b.open().await;
    for created in [30, 10, 20] {
        let key = StoredSigningKey {
            created,
            wrapped: vec![created as u8],
        };
        store.add_signing_key("https://issuer", &key).await.unwrap();
    }
    let listed: Vec<i64> = store
        .list_signing_keys("https://issuer")
        .await
        .unwrap()
        .iter()
        .map(|k| k.created)
        .collect();
    assert_eq!(listed, [10, 20, 30]);
    assert!(store.list_signing_keys("other").await.unwrap().is_empty());
    assert!(
        store
            .delete_signing_key("https://issuer", 10)
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_signing_key("https://issuer", 10)
            .await
            .unwrap()
    );
    assert_eq!(store.secret("hmac").await.unwrap(), None);
    assert_eq!(
        store.secret_or_insert("hmac", b"first").await.unwrap(),
        b"first"
    );
    assert_eq!(
        store.secret("hmac").await.unwrap().as_deref(),
        Some(&b"first"[..])
    );
    assert_eq!(
        store.secret_or_insert("hmac", b"second").await.unwrap(),
        b"first"
    );
}

async fn a_writer_without_replace_never_replaces_and_the_quota_counts_the_project(b: &Backend) {
    let s = b.open().await;
    bucket(&s).await;
    let creator = PutLimits {
        may_replace: false,
        project_quota: None,
    };
    assert_eq!(
        s.put_object(&object("m", 1), Preconditions::default(), creator)
            .await
            .unwrap(),
        Ok(None),
        "creating is allowed"
    );
    // The object exists by the time the write commits: refused, whatever the preconditions.
    for pre in [Preconditions::default(), generation_match(1)] {
        assert_eq!(
            s.put_object(&object("m", 2), pre, creator).await.unwrap(),
            Err(PutRefused::WouldReplace(1))
        );
    }
    assert_eq!(s.get_object("b1", "m").await.unwrap(), Some(object("m", 1)));
    // Objects are 3 bytes: one live, so a quota of 5 takes a replacement but not a second.
    assert_eq!(
        s.project_storage_usage(&ProjectId::parse("alpha-1").unwrap())
            .await
            .unwrap()
            .stored,
        3
    );
    let quota = |q| PutLimits {
        may_replace: true,
        project_quota: Some(q),
    };
    assert_eq!(
        s.put_object(&object("m", 2), Preconditions::default(), quota(5))
            .await
            .unwrap(),
        Ok(Some("blob-1".into()))
    );
    assert_eq!(
        s.put_object(&object("n", 3), Preconditions::default(), quota(5))
            .await
            .unwrap(),
        Err(PutRefused::OverQuota { used: 3, quota: 5 })
    );
    assert_eq!(s.get_object("b1", "n").await.unwrap(), None);
    // A bucket deleted while its upload streamed: NotFound, not a database error.
    let mut orphan = object("o", 4);
    orphan.bucket = "gone".into();
    assert!(matches!(
        s.put_object(&orphan, Preconditions::default(), PutLimits::NONE).await,
        Err(StoreError::NotFound(m)) if m.contains("gone")
    ));
}

/// A project's quota counts all it stores, objects and registry blobs (a digest once, however
/// many images link it), and keeps room for its unfinished uploads; a blob that would pass it
/// is refused as it is recorded, and one the project already holds is not counted twice.
async fn the_quota_counts_registry_blobs_and_unfinished_uploads(b: &Backend) {
    let s = b.open().await;
    bucket(&s).await;
    s.create_repository(&repository()).await.unwrap();
    let alpha = ProjectId::parse("alpha-1").unwrap();
    s.put_object(&object("m", 1), Preconditions::default(), PutLimits::NONE)
        .await
        .unwrap()
        .unwrap();
    let blob = |digest: &str, size| RegistryBlob {
        digest: digest.into(),
        size,
        blob_key: format!("key-{digest}"),
    };
    assert_eq!(
        s.put_blob(&image(), &blob("sha256:b1", 10), Some(13))
            .await
            .unwrap(),
        Ok(None),
        "3 + 10 fits a quota of 13"
    );
    let other = ImageRef {
        image: "other".into(),
        ..image()
    };
    assert_eq!(
        s.put_blob(&other, &blob("sha256:b1", 10), Some(13))
            .await
            .unwrap(),
        Ok(Some("key-sha256:b1".into())),
        "a digest the project holds is linked again without counting twice"
    );
    assert_eq!(
        s.put_blob(&image(), &blob("sha256:b2", 1), Some(13))
            .await
            .unwrap(),
        Err(OverQuota {
            used: 13,
            quota: 13
        })
    );
    assert!(
        s.linked_blob(&image(), "sha256:b2")
            .await
            .unwrap()
            .is_none()
    );
    s.create_registry_upload(&RegistryUpload {
        upload_id: "r1".into(),
        image: image(),
        received: 0,
        chunks: 0,
        single_chunk_sha256: None,
        create_time: at(100),
    })
    .await
    .unwrap();
    assert!(
        s.advance_registry_upload("r1", 0, 5, "sha256:aa", None)
            .await
            .unwrap()
            .unwrap()
    );
    s.create_upload_session(&UploadSession {
        attributes: Default::default(),
        upload_id: "u1".into(),
        bucket: "b1".into(),
        name: "big.bin".into(),
        content_type: "application/octet-stream".into(),
        preconditions: Preconditions::default(),
        creator: None,
        received: 7,
        create_time: at(100),
    })
    .await
    .unwrap();
    let usage = s.project_storage_usage(&alpha).await.unwrap();
    assert_eq!((usage.stored, usage.uploading, usage.total()), (13, 12, 25));
    // Uploads advance only within the quota, counted in their own transaction: what each
    // holds already is in the 25.
    let over = Err(OverQuota {
        used: 25,
        quota: 26,
    });
    assert_eq!(
        s.advance_registry_upload("r1", 5, 2, "sha256:bb", Some(26))
            .await
            .unwrap(),
        over
    );
    assert_eq!(
        s.advance_upload_session("u1", 7, 9, Some(26))
            .await
            .unwrap(),
        over
    );
    assert_eq!(
        s.advance_upload_session("u1", 7, 8, Some(26))
            .await
            .unwrap(),
        Ok(true)
    );
    // A mount links bytes into a project as a push would; another project's quota is its own.
    s.create_project(&project("beta-2", 223456789012), &owner_policy(), None)
        .await
        .unwrap();
    let beta = RepositoryRecord {
        project_id: ProjectId::parse("beta-2").unwrap(),
        ..repository()
    };
    s.create_repository(&beta).await.unwrap();
    let beta = ImageRef {
        repository: beta.name(),
        image: "app".into(),
    };
    assert_eq!(
        s.mount_blob(&beta, &image(), "sha256:b1", Some(9))
            .await
            .unwrap(),
        Err(OverQuota { used: 0, quota: 9 })
    );
    assert!(s.linked_blob(&beta, "sha256:b1").await.unwrap().is_none());
    assert_eq!(
        s.mount_blob(&beta, &image(), "sha256:b1", Some(10))
            .await
            .unwrap(),
        Ok(Some(blob("sha256:b1", 10)))
    );
}

async fn deleting_a_bucket_cancels_its_upload_sessions(b: &Backend) {
    let s = b.open().await;
    bucket(&s).await;
    for (id, received) in [("u1", 0), ("u2", 4096)] {
        s.create_upload_session(&UploadSession {
            attributes: Default::default(),
            upload_id: id.into(),
            bucket: "b1".into(),
            name: format!("{id}.bin"),
            content_type: "application/octet-stream".into(),
            preconditions: Preconditions::default(),
            creator: None,
            received,
            create_time: at(100),
        })
        .await
        .unwrap();
    }
    let mut cancelled: Vec<_> = s
        .delete_bucket("b1")
        .await
        .unwrap()
        .expect("the bucket existed")
        .into_iter()
        .map(|u| (u.upload_id, u.received))
        .collect();
    cancelled.sort();
    assert_eq!(cancelled, [("u1".into(), 0), ("u2".into(), 4096)]);
    assert!(s.get_upload_session("u1").await.unwrap().is_none());
    assert!(s.get_bucket("b1").await.unwrap().is_none());
    assert_eq!(s.delete_bucket("b1").await.unwrap(), None, "already gone");
}
