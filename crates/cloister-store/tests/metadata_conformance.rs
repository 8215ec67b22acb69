//! One suite for every metadata store: each test runs against the embedded SQLite store and
//! against a real PostgreSQL server (`support/postgres.rs`). A backend can open several
//! handles on one database: a reopened server, or another replica.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};

use cloister_domain::{AuditEntry, Decision, Email, Member, Policy, ProjectId, ProjectNumber};
use cloister_store::{
    AuditFilter, BucketRecord, ChallengeRecord, ConsumeError, CredentialRecord, FederationRecord,
    ImageRef, InstanceRecord, KmsCryptoKey, KmsKeyRing, KmsKeyVersion, ManifestRecord,
    ManifestRefs, MetadataStore, ObjectRecord, PostgresStore, Preconditions, ProjectRecord,
    PutLimits, PutRefused, RegistryBlob, RegistryUpload, RepositoryRecord, SealedPlace,
    ServiceAccountRecord, SqliteStore, StoreError, StoredSigningKey, UploadSession, UserRecord,
};
use support::postgres::Postgres;

trait Backend {
    /// A new handle on this backend's database (another replica, or the server reopened).
    fn try_open(&self) -> Result<Arc<dyn MetadataStore>, StoreError>;
    fn open(&self) -> Arc<dyn MetadataStore> {
        self.try_open().unwrap()
    }
    /// Runs SQL on the database directly, past the store; the database's error text.
    fn execute(&self, sql: &str) -> Result<(), String>;
    /// The SQL that records the schema version as `version`.
    fn set_schema_version(&self, version: i64) -> String;
}

struct Sqlite(tempfile::TempDir);

impl Backend for Sqlite {
    fn try_open(&self) -> Result<Arc<dyn MetadataStore>, StoreError> {
        Ok(Arc::new(SqliteStore::open(&self.0.path().join("meta.db"))?))
    }
    fn set_schema_version(&self, version: i64) -> String {
        format!("PRAGMA user_version = {version}")
    }
    fn execute(&self, sql: &str) -> Result<(), String> {
        let c = rusqlite::Connection::open(self.0.path().join("meta.db")).unwrap();
        c.execute(sql, []).map(drop).map_err(|e| e.to_string())
    }
}

struct Pg(String);

impl Backend for Pg {
    fn try_open(&self) -> Result<Arc<dyn MetadataStore>, StoreError> {
        Ok(Arc::new(PostgresStore::open(
            &self.0,
            cloister_store::DEFAULT_DATABASE_CONNECTIONS,
        )?))
    }
    fn set_schema_version(&self, version: i64) -> String {
        format!("UPDATE cloister_schema SET version = {version}")
    }
    fn execute(&self, sql: &str) -> Result<(), String> {
        let mut c = ::postgres::Client::connect(&self.0, ::postgres::NoTls).unwrap();
        c.execute(sql, &[]).map(drop).map_err(|e| {
            e.as_db_error()
                .map(|d| d.message().to_owned())
                .unwrap_or_else(|| e.to_string())
        })
    }
}

macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $test() { super::$test(&super::Sqlite(tempfile::tempdir().unwrap())) })*
        }
        mod postgres {
            $(#[test] fn $test() { super::$test(&super::Pg(super::Postgres::database())) })*
        }
    };
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
    deleting_a_bucket_cancels_its_upload_sessions,
    key_rotation_keeps_old_versions,
    destroying_a_key_version_erases_it_once_and_resealing_passes_it_by,
    manifests_need_their_content_and_tags_list_in_order,
    instances_round_trip_and_filter_by_zone,
    a_lapsed_replica_lease_terminates_its_instances_once,
    resealing_replaces_every_sealed_value_or_none,
    a_schema_newer_than_this_build_is_refused,
);

/// Runs `f(i, store)` on `n` threads at once, alternating between two handles (replicas).
fn race<T: Send + 'static>(
    b: &dyn Backend,
    n: usize,
    f: impl Fn(usize, &dyn MetadataStore) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let replicas = [b.open(), b.open()];
    let f = Arc::new(f);
    let start = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let (f, start, store) = (
                Arc::clone(&f),
                Arc::clone(&start),
                Arc::clone(&replicas[i % 2]),
            );
            std::thread::spawn(move || {
                start.wait();
                f(i, store.as_ref())
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
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

fn a_schema_newer_than_this_build_is_refused(b: &dyn Backend) {
    drop(b.open());
    b.execute(&b.set_schema_version(999)).unwrap();
    let Err(e) = b.try_open() else {
        panic!("an older build opened a newer schema");
    };
    assert!(
        e.to_string()
            .contains("schema is version 999, newer than this cloister"),
        "{e}"
    );
}

fn bucket(s: &dyn MetadataStore) {
    s.create_project(&project("alpha-1", 123456789012), &owner_policy())
        .unwrap();
    s.create_bucket(&BucketRecord {
        name: "b1".into(),
        project_id: ProjectId::parse("alpha-1").unwrap(),
        location: "US".into(),
        storage_class: "STANDARD".into(),
        create_time: "t".into(),
    })
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
        create_time: "t".into(),
        update_time: "t".into(),
        blob_key: format!("blob-{generation}"),
    }
}

/// A write by someone who may replace objects, in a project without a quota.
fn put(
    s: &dyn MetadataStore,
    o: &ObjectRecord,
    pre: Preconditions,
) -> Result<Option<String>, PutRefused> {
    s.put_object(o, pre, PutLimits::NONE).unwrap()
}

fn generation_match(g: i64) -> Preconditions {
    Preconditions {
        if_generation_match: Some(g),
        if_generation_not_match: None,
    }
}

fn objects_obey_generation_preconditions_and_list_in_byte_order(b: &dyn Backend) {
    let s = b.open();
    bucket(s.as_ref());
    assert_eq!(
        put(s.as_ref(), &object("m", 1), generation_match(0)),
        Ok(None)
    );
    assert_eq!(
        put(s.as_ref(), &object("m", 2), generation_match(0)),
        Err(PutRefused::Precondition(Some(1)))
    );
    assert_eq!(
        put(s.as_ref(), &object("m", 2), generation_match(1)),
        Ok(Some("blob-1".into())),
        "the replaced generation's blob is handed back for deletion"
    );
    assert_eq!(s.get_object("b1", "m").unwrap(), Some(object("m", 2)));
    assert_eq!(
        s.delete_object("b1", "m", generation_match(1)).unwrap(),
        Err(Some(2))
    );
    assert!(
        s.get_object("b1", "m").unwrap().is_some(),
        "a refused delete deletes nothing"
    );
    // The replaced generation's blob is no object's any more: the orphan sweep may take it.
    let keys = ["blob-1", "blob-2", "blob-9"].map(String::from);
    assert_eq!(s.object_blobs_in_use(&keys).unwrap(), ["blob-2"]);
    for name in ["a/x", "a/é", "a/Z", "a_b", "B", "a/y"] {
        put(s.as_ref(), &object(name, 5), Preconditions::default()).unwrap();
    }
    let names = |prefix: &str, after: &str, limit| -> Vec<String> {
        s.list_objects("b1", prefix, after, limit)
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect()
    };
    assert_eq!(
        names("", "", 100),
        ["B", "a/Z", "a/x", "a/y", "a/é", "a_b", "m"]
    );
    assert_eq!(names("a/", "a/Z", 2), ["a/x", "a/y"]);
    assert_eq!(
        names("a_", "", 100),
        ["a_b"],
        "a prefix is literal, not a LIKE pattern"
    );
    assert!(
        matches!(s.delete_bucket("b1"), Err(StoreError::AlreadyExists(m)) if m.contains("7 objects"))
    );
}

fn concurrent_writers_with_if_generation_match_never_both_win(b: &dyn Backend) {
    bucket(b.open().as_ref());
    for round in 0..3 {
        let name = format!("race-{round}");
        let results = race(b, 8, move |i, s| {
            put(s, &object(&name, 10 + i as i64), generation_match(0))
        });
        let live = b
            .open()
            .get_object("b1", &format!("race-{round}"))
            .unwrap()
            .unwrap();
        // The losers are told the winner's generation.
        one_winner(&results, |e| {
            *e == PutRefused::Precondition(Some(live.generation))
        });
    }
}

fn a_challenge_raced_by_two_replicas_is_consumed_once(b: &dyn Backend) {
    let s = b.open();
    s.create_project(&project("alpha-1", 123456789012), &owner_policy())
        .unwrap();
    s.create_challenge(&ChallengeRecord {
        name: "c1".into(),
        project_id: ProjectId::parse("alpha-1").unwrap(),
        nonce: vec![9; 32],
        create_time: 100,
        expire_time: 200,
    })
    .unwrap();
    let results = race(b, 8, |_, s| s.consume_challenge("c1", 150).unwrap());
    one_winner(&results, |e| *e == ConsumeError::AlreadyUsed);
}

fn concurrent_policy_writers_with_one_etag_never_both_win(b: &dyn Backend) {
    let s = b.open();
    s.create_project(&project("alpha-1", 123456789012), &owner_policy())
        .unwrap();
    let (read, _) = s.get_policy("projects/alpha-1").unwrap();
    let results = race(b, 6, move |i, s| {
        let mut p = read.clone();
        p.add_binding(
            "roles/viewer",
            Member::parse(&format!("user:u{i}@x.com")).unwrap(),
        )
        .unwrap();
        s.set_policy("projects/alpha-1", &p)
            .map_err(|e| e.to_string())
    });
    one_winner(&results, |e| e.contains("stale"));
}

fn replicas_starting_together_agree_on_a_secret(b: &dyn Backend) {
    let values = race(b, 6, |i, s| {
        s.secret_or_insert("hmac", &[i as u8; 32]).unwrap()
    });
    assert!(values.iter().all(|v| *v == values[0]), "{values:?}");
    assert_eq!(b.open().secret("hmac").unwrap().as_ref(), Some(&values[0]));
}

fn upload_sessions_advance_only_from_the_offset_they_hold(b: &dyn Backend) {
    let s = b.open();
    bucket(s.as_ref());
    let session = UploadSession {
        upload_id: "u1".into(),
        bucket: "b1".into(),
        name: "big".into(),
        content_type: "application/octet-stream".into(),
        preconditions: generation_match(0),
        creator: Some(cloister_domain::Principal::User(
            Email::parse("creator@x.com").unwrap(),
        )),
        received: 0,
        create_time: 100,
    };
    s.create_upload_session(&session).unwrap();
    let moved = race(b, 6, |_, s| {
        s.advance_upload_session("u1", 0, 1024).unwrap()
    });
    assert_eq!(
        moved.iter().filter(|m| **m).count(),
        1,
        "one chunk at offset 0, not several"
    );
    let got = s.get_upload_session("u1").unwrap().unwrap();
    assert_eq!(
        (got.received, got.preconditions, &got.creator),
        (1024, session.preconditions, &session.creator)
    );
    // Only sessions made before the cutoff are stale (the expiry sweep's question).
    assert!(s.stale_upload_sessions(100).unwrap().is_empty());
    let stale = s.stale_upload_sessions(101).unwrap();
    assert_eq!(stale.len(), 1);
    assert_eq!(
        (stale[0].upload_id.as_str(), stale[0].received),
        ("u1", 1024)
    );
    assert!(s.delete_upload_session("u1").unwrap());
    assert!(s.get_upload_session("u1").unwrap().is_none());

    s.create_repository(&repository()).unwrap();
    let image = image();
    s.create_registry_upload(&RegistryUpload {
        upload_id: "r1".into(),
        image: image.clone(),
        received: 0,
        chunks: 0,
        single_chunk_sha256: None,
        create_time: 100,
    })
    .unwrap();
    assert!(s.advance_registry_upload("r1", 0, 10, "sha256:aa").unwrap());
    assert!(!s.advance_registry_upload("r1", 0, 10, "sha256:bb").unwrap());
    let one = s.get_registry_upload("r1").unwrap().unwrap();
    assert_eq!(
        (one.received, one.chunks, one.single_chunk_sha256.as_deref()),
        (10, 1, Some("sha256:aa"))
    );
    assert!(s.advance_registry_upload("r1", 10, 5, "sha256:cc").unwrap());
    let two = s.get_registry_upload("r1").unwrap().unwrap();
    assert_eq!(
        (two.received, two.chunks, two.single_chunk_sha256),
        (15, 2, None)
    );
    assert_eq!(s.stale_registry_uploads(101).unwrap().len(), 1);
    assert!(s.stale_registry_uploads(100).unwrap().is_empty());
}

/// A project with key ring `r` holding crypto key `k`, version 1 wrapped as `[1; 60]`.
fn kms_key(s: &dyn MetadataStore) -> (KmsKeyRing, KmsCryptoKey, KmsKeyVersion) {
    s.create_project(&project("alpha-1", 123456789012), &owner_policy())
        .unwrap();
    let ring = KmsKeyRing {
        name: "projects/alpha-1/locations/global/keyRings/r".into(),
        project_id: ProjectId::parse("alpha-1").unwrap(),
        create_time: "t".into(),
    };
    s.create_key_ring(&ring).unwrap();
    let key = KmsCryptoKey {
        name: format!("{}/cryptoKeys/k", ring.name),
        key_ring: ring.name.clone(),
        purpose: "ENCRYPT_DECRYPT".into(),
        primary_version: 1,
        create_time: "t".into(),
    };
    let first = KmsKeyVersion {
        key: key.name.clone(),
        version: 1,
        state: "ENABLED".into(),
        wrapped_material: vec![1; 60],
        create_time: "t".into(),
    };
    s.create_crypto_key(&key, &first).unwrap();
    (ring, key, first)
}

fn key_rotation_keeps_old_versions(b: &dyn Backend) {
    let s = b.open();
    let (ring, key, first) = kms_key(s.as_ref());
    assert!(matches!(
        s.create_key_ring(&ring),
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(
        s.rotate_crypto_key(&key.name, vec![2; 60], "t2").unwrap(),
        2
    );
    assert_eq!(
        s.get_crypto_key(&key.name)
            .unwrap()
            .unwrap()
            .primary_version,
        2
    );
    assert_eq!(s.get_key_version(&key.name, 1).unwrap(), Some(first));
    assert_eq!(s.list_key_versions(&key.name).unwrap().len(), 2);
    assert!(matches!(
        s.rotate_crypto_key("projects/alpha-1/nope", vec![], "t"),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        s.list_key_rings("projects/alpha-1/locations/global")
            .unwrap(),
        vec![ring.clone()]
    );
    assert!(
        s.list_key_rings("projects/alpha-1/locations/glob")
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.get_policy(&key.name).unwrap().1.as_deref(),
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
        create_time: "t".into(),
    }
}

fn image() -> ImageRef {
    ImageRef {
        repository: repository().name(),
        image: "ml/app".into(),
    }
}

fn manifests_need_their_content_and_tags_list_in_order(b: &dyn Backend) {
    let s = b.open();
    s.create_project(&project("alpha-1", 123456789012), &owner_policy())
        .unwrap();
    s.create_repository(&repository()).unwrap();
    let image = image();
    let manifest = ManifestRecord {
        digest: "sha256:m1".into(),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        content: b"{}".to_vec(),
        subject: None,
        artifact_type: None,
        create_time: "t".into(),
    };
    let refs = ManifestRefs {
        blobs: vec!["sha256:b1".into()],
        manifests: vec![],
    };
    assert_eq!(
        s.put_manifest(&image, &manifest, &refs, Some("v1"))
            .unwrap(),
        Err("sha256:b1".into())
    );
    assert!(
        s.get_manifest(&image, "sha256:m1").unwrap().is_none(),
        "refused means nothing stored"
    );
    let blob = RegistryBlob {
        digest: "sha256:b1".into(),
        size: 4,
        blob_key: "k1".into(),
    };
    assert_eq!(s.put_blob(&image, &blob).unwrap(), None);
    assert_eq!(
        s.put_blob(
            &image,
            &RegistryBlob {
                blob_key: "k2".into(),
                ..blob.clone()
            }
        )
        .unwrap(),
        Some("k2".into()),
        "a second copy of a digest is handed back for deletion"
    );
    let other = ImageRef {
        image: "other".into(),
        ..image.clone()
    };
    assert!(
        s.linked_blob(&other, "sha256:b1").unwrap().is_none(),
        "blobs are linked per image"
    );
    assert_eq!(
        s.mount_blob(&other, &image, "sha256:b1").unwrap(),
        Some(blob.clone())
    );
    for tag in ["v1", "V2", "latest"] {
        assert_eq!(
            s.put_manifest(&image, &manifest, &refs, Some(tag)).unwrap(),
            Ok(())
        );
    }
    assert_eq!(
        s.list_tags(&image, None, 10).unwrap(),
        ["V2", "latest", "v1"]
    );
    assert_eq!(s.list_tags(&image, Some("V2"), 1).unwrap(), ["latest"]);
    assert_eq!(
        s.resolve_tag(&image, "v1").unwrap().as_deref(),
        Some("sha256:m1")
    );
    let versions = s.list_image_versions(&repository().name()).unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(
        (versions[0].size, versions[0].tags.clone()),
        (2, vec!["V2".into(), "latest".into(), "v1".into()])
    );
    assert!(s.delete_manifest(&image, "sha256:m1").unwrap());
    assert!(
        s.resolve_tag(&image, "v1").unwrap().is_none(),
        "tags go with their manifest"
    );
    assert_eq!(s.delete_repository(&repository().name()).unwrap(), ["k1"]);
}

fn instances_round_trip_and_filter_by_zone(b: &dyn Backend) {
    let s = b.open();
    s.create_project(&project("alpha-1", 123456789012), &owner_policy())
        .unwrap();
    let instance = |zone: &str, name: &str, id| InstanceRecord {
        project_id: ProjectId::parse("alpha-1").unwrap(),
        zone: zone.into(),
        name: name.into(),
        id,
        service_account: "sa@alpha-1.iam.gserviceaccount.com".into(),
        metadata: BTreeMap::from([("tee-image-reference".into(), "r/i:t".into())]),
        confidential_type: "VTPM".into(),
        status: "RUNNING".into(),
        create_time: "t".into(),
    };
    let a = instance("us-west1-b", "a", u64::MAX - 1);
    s.create_instance(&a).unwrap();
    s.create_instance(&instance("europe-west4-a", "b", 7))
        .unwrap();
    assert!(matches!(
        s.create_instance(&a),
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(
        s.get_instance(&a.resource_name()).unwrap(),
        Some(a.clone()),
        "a 64-bit id survives"
    );
    let alpha = ProjectId::parse("alpha-1").unwrap();
    assert_eq!(s.list_instances(&alpha, "-").unwrap().len(), 2);
    assert_eq!(
        s.list_instances(&alpha, "us-west1-b").unwrap(),
        vec![a.clone()]
    );
    assert!(
        s.set_instance_status(&a.resource_name(), "TERMINATED")
            .unwrap()
    );
    assert!(s.delete_instance(&a.resource_name()).unwrap());
    assert!(
        !s.set_instance_status(&a.resource_name(), "RUNNING")
            .unwrap()
    );
}

fn a_lapsed_replica_lease_terminates_its_instances_once(b: &dyn Backend) {
    let s = b.open();
    s.create_project(&project("alpha-1", 123456789012), &owner_policy())
        .unwrap();
    let instance = |name: &str, id, status: &str| InstanceRecord {
        project_id: ProjectId::parse("alpha-1").unwrap(),
        zone: "us-west1-b".into(),
        name: name.into(),
        id,
        service_account: "sa@alpha-1.iam.gserviceaccount.com".into(),
        metadata: BTreeMap::new(),
        confidential_type: "VTPM".into(),
        status: status.into(),
        create_time: "t".into(),
    };
    for (name, id, status) in [
        ("on-a", u64::MAX - 3, "RUNNING"),
        ("held-on-a", 11, "SUSPENDED"),
        ("ended-on-a", 12, "TERMINATED"),
        ("on-b", 21, "RUNNING"),
    ] {
        s.create_instance(&instance(name, id, status)).unwrap();
    }
    let status = |name: &str| {
        s.get_instance(&format!(
            "projects/alpha-1/zones/us-west1-b/instances/{name}"
        ))
        .unwrap()
        .unwrap()
        .status
    };
    // 13 was deleted since A's last renewal: nothing to mark.
    assert!(
        !s.renew_replica_lease("a", 100, &[u64::MAX - 3, 11, 12, 13])
            .unwrap(),
        "a first renewal held no lease"
    );
    assert!(
        s.renew_replica_lease("a", 110, &[u64::MAX - 3, 11, 12, 13])
            .unwrap()
    );
    assert!(!s.renew_replica_lease("b", 200, &[21]).unwrap());
    assert_eq!(
        s.replica_leases().unwrap(),
        [("a".to_owned(), 110), ("b".to_owned(), 200)]
    );

    assert_eq!(
        s.expire_replica_leases(110).unwrap(),
        Vec::<String>::new(),
        "a lease is good until it expires"
    );
    assert_eq!(status("on-a"), "RUNNING");
    // A stopped renewing; B (another handle) takes over A's lapsed lease, and only A's.
    let expired: Vec<Vec<String>> = race(b, 4, |_, s| s.expire_replica_leases(111).unwrap());
    let mut all: Vec<String> = expired.concat();
    all.sort();
    assert_eq!(
        all,
        [
            "projects/alpha-1/zones/us-west1-b/instances/held-on-a",
            "projects/alpha-1/zones/us-west1-b/instances/on-a",
        ],
        "each of A's live instances is reported by exactly one replica: {expired:?}"
    );
    assert_eq!(status("on-a"), "TERMINATED");
    assert_eq!(status("held-on-a"), "TERMINATED");
    assert_eq!(status("on-b"), "RUNNING", "B's lease has not lapsed");
    assert_eq!(s.replica_leases().unwrap(), [("b".to_owned(), 200)]);
    // A comes back: its renewal says its lease was taken over.
    assert!(!s.renew_replica_lease("a", 300, &[u64::MAX - 3]).unwrap());
    assert_eq!(
        s.expire_replica_leases(250).unwrap(),
        ["projects/alpha-1/zones/us-west1-b/instances/on-b"]
    );
    assert_eq!(
        b.open().expire_replica_leases(301).unwrap(),
        Vec::<String>::new(),
        "an instance already TERMINATED is not reported again"
    );
}

fn resealing_replaces_every_sealed_value_or_none(b: &dyn Backend) {
    let s = b.open();
    let (_, key, _) = kms_key(s.as_ref());
    s.rotate_crypto_key(&key.name, vec![2; 60], "t2").unwrap();
    let signing = |wrapped: u8| StoredSigningKey {
        created: 7,
        wrapped: vec![wrapped; 40],
    };
    s.add_signing_key("http://issuer.test", &signing(3))
        .unwrap();
    s.secret_or_insert("access-token-hmac", &[4; 32]).unwrap();
    s.secret_or_insert("kek-check", &[5; 32]).unwrap();
    let snapshot = |s: &dyn MetadataStore| {
        (
            s.list_signing_keys("http://issuer.test").unwrap(),
            s.secret("access-token-hmac").unwrap(),
            s.secret("kek-check").unwrap(),
            s.list_key_versions(&key.name).unwrap(),
        )
    };
    let before = snapshot(s.as_ref());

    // A value that cannot be resealed (sealed by another KEK, say) stops the whole rotation.
    let err = b
        .open()
        .reseal_all(&|place, value| match place {
            SealedPlace::KmsKeyVersion { version: 2, .. } => Err("does not open".into()),
            _ => Ok(value.iter().map(|b| b + 10).collect()),
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}/cryptoKeyVersions/2: does not open; nothing was changed",
            key.name
        )
    );
    assert_eq!(snapshot(s.as_ref()), before, "nothing changed");

    // Every value is handed over with its place (whose name is its AAD) and replaced.
    let seen = std::sync::Mutex::new(Vec::new());
    let count = b
        .open()
        .reseal_all(&|place, value| {
            seen.lock().unwrap().push(place.aad().to_owned());
            Ok(value.iter().map(|b| b + 10).collect())
        })
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
    let (keys, token_key, check, versions) = snapshot(s.as_ref());
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

fn project(id: &str, number: u64) -> ProjectRecord {
    ProjectRecord {
        id: ProjectId::parse(id).unwrap(),
        number: ProjectNumber(number),
        display_name: id.into(),
        create_time: "2026-01-01T00:00:00Z".into(),
        creator: "user:a@x.com".into(),
    }
}

fn owner_policy() -> Policy {
    let mut p = Policy::default();
    p.add_binding("roles/owner", Member::parse("user:a@x.com").unwrap())
        .unwrap();
    p
}

fn projects_and_policies_survive_reopen(b: &dyn Backend) {
    b.open()
        .create_project(&project("alpha-1", 123456789012), &owner_policy())
        .unwrap();
    let s = b.open();
    let p = s
        .get_project(&ProjectId::parse("alpha-1").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(p.number, ProjectNumber(123456789012));
    let (policy, parent) = s.get_policy("projects/alpha-1").unwrap();
    assert_eq!(policy.bindings, owner_policy().bindings);
    assert!(parent.is_none());
    assert!(!policy.etag.is_empty());
}

fn duplicate_project_ids_and_numbers_are_refused(b: &dyn Backend) {
    let s = b.open();
    s.create_project(&project("alpha-1", 123456789012), &owner_policy())
        .unwrap();
    let e = s
        .create_project(&project("alpha-1", 223456789012), &owner_policy())
        .unwrap_err();
    assert!(
        e.to_string().contains("project alpha-1 already exists"),
        "{e}"
    );
    let e = s
        .create_project(&project("beta-22", 123456789012), &owner_policy())
        .unwrap_err();
    assert!(e.to_string().contains("project number"), "{e}");
    assert!(
        s.get_project(&ProjectId::parse("beta-22").unwrap())
            .unwrap()
            .is_none()
    );
}

fn a_stale_etag_is_refused_and_changes_nothing(b: &dyn Backend) {
    let s = b.open();
    s.create_project(&project("alpha-1", 123456789012), &owner_policy())
        .unwrap();
    let (mut first, _) = s.get_policy("projects/alpha-1").unwrap();
    let (mut second, _) = s.get_policy("projects/alpha-1").unwrap();
    first
        .add_binding("roles/viewer", Member::parse("user:b@x.com").unwrap())
        .unwrap();
    let stored = s.set_policy("projects/alpha-1", &first).unwrap();
    second
        .add_binding("roles/viewer", Member::parse("user:c@x.com").unwrap())
        .unwrap();
    assert!(matches!(
        s.set_policy("projects/alpha-1", &second),
        Err(StoreError::StaleEtag { .. })
    ));
    let (now, _) = s.get_policy("projects/alpha-1").unwrap();
    assert_eq!(now, stored);
    assert!(matches!(
        s.set_policy("projects/nope-123", &first),
        Err(StoreError::NotFound(_))
    ));
}

fn the_audit_log_is_append_only_and_filterable(b: &dyn Backend) {
    let s = b.open();
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
        }])
        .unwrap();
    }
    let under = |p: &str| AuditFilter {
        resource_prefix: Some(p.into()),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(
        s.list_audit(&under("projects/a-proj")).unwrap().len(),
        3,
        "prefix is per path segment; resources named elsewhere match by owning project"
    );
    let denials = AuditFilter {
        decision: Some(Decision::Deny),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(s.list_audit(&denials).unwrap().len(), 2);
    for sql in [
        "UPDATE audit_log SET decision = 'allow'",
        "DELETE FROM audit_log",
    ] {
        let e = b.execute(sql).unwrap_err();
        assert!(e.contains("append-only"), "{sql}: {e}");
    }
    assert_eq!(s.list_audit(&denials).unwrap().len(), 2);
}

fn service_accounts_inherit_from_their_project_and_vanish_with_their_policy(b: &dyn Backend) {
    let s = b.open();
    s.create_project(&project("alpha-1", 123456789012), &owner_policy())
        .unwrap();
    let sa = ServiceAccountRecord {
        email: Email::parse("sa-1@alpha-1.iam.gserviceaccount.com").unwrap(),
        project_id: ProjectId::parse("alpha-1").unwrap(),
        unique_id: "100000000000000000001".into(),
        display_name: "d".into(),
        description: String::new(),
        disabled: false,
        create_time: "t".into(),
    };
    s.create_service_account(&sa).unwrap();
    assert!(matches!(
        s.create_service_account(&sa),
        Err(StoreError::AlreadyExists(_))
    ));
    let (policy, parent) = s.get_policy(&sa.resource_name()).unwrap();
    assert!(policy.bindings.is_empty());
    assert_eq!(parent.as_deref(), Some("projects/alpha-1"));
    assert_eq!(
        s.list_service_accounts(&sa.project_id).unwrap(),
        vec![sa.clone()]
    );
    assert!(s.delete_service_account(&sa.email).unwrap());
    assert!(!s.delete_service_account(&sa.email).unwrap());
    assert_eq!(s.get_policy(&sa.resource_name()).unwrap().1, None);
}

fn providers_need_their_pool_and_updates_compare_etags(b: &dyn Backend) {
    let s = b.open();
    s.create_project(&project("alpha-1", 123456789012), &owner_policy())
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
        s.create_federation(&rec(&provider)),
        Err(StoreError::NotFound(_))
    ));
    s.create_federation(&rec(pool)).unwrap();
    s.create_federation(&rec(&provider)).unwrap();
    assert_eq!(
        s.list_federation("projects/123456789012/locations/global")
            .unwrap()
            .len(),
        1
    );
    assert_eq!(s.list_federation(pool).unwrap().len(), 1);
    let e1 = s
        .update_federation(&provider, &serde_json::json!({"x": 1}), "e0")
        .unwrap();
    assert!(matches!(
        s.update_federation(&provider, &serde_json::json!({"x": 2}), "e0"),
        Err(StoreError::StaleEtag { .. })
    ));
    assert_eq!(s.get_federation(&provider).unwrap().unwrap().etag, e1);
    assert!(s.delete_federation(pool).unwrap());
    assert!(
        s.get_federation(&provider).unwrap().is_none(),
        "providers go with their pool"
    );
}

fn a_challenge_is_consumed_once_and_never_after_it_expires(b: &dyn Backend) {
    let s = b.open();
    s.create_project(&project("alpha-1", 123456789012), &owner_policy())
        .unwrap();
    let c = |name: &str, expire_time| ChallengeRecord {
        name: name.into(),
        project_id: ProjectId::parse("alpha-1").unwrap(),
        nonce: vec![1; 32],
        create_time: 100,
        expire_time,
    };
    s.create_challenge(&c("c1", 200)).unwrap();
    s.create_challenge(&c("c2", 150)).unwrap();
    assert_eq!(s.consume_challenge("c1", 120).unwrap(), Ok(c("c1", 200)));
    assert_eq!(
        s.consume_challenge("c1", 121).unwrap(),
        Err(ConsumeError::AlreadyUsed)
    );
    assert_eq!(
        s.consume_challenge("c2", 150).unwrap(),
        Err(ConsumeError::Expired { expire_time: 150 })
    );
    assert_eq!(
        s.consume_challenge("c3", 120).unwrap(),
        Err(ConsumeError::NotFound)
    );
}

fn users_and_credentials_round_trip(b: &dyn Backend) {
    let s = b.open();
    let email = Email::parse("a@x.com").unwrap();
    let user = UserRecord {
        email: email.clone(),
        display_name: "A".into(),
        admin: true,
        create_time: "t".into(),
    };
    s.create_user(&user).unwrap();
    assert!(matches!(
        s.create_user(&user),
        Err(StoreError::AlreadyExists(_))
    ));
    let cred = CredentialRecord {
        id: "c1".into(),
        user: email.clone(),
        secret_sha256: [7; 32],
        create_time: "t".into(),
    };
    s.create_credential(&cred).unwrap();
    assert_eq!(s.get_credential("c1").unwrap().unwrap(), cred);
    assert!(s.get_credential("c2").unwrap().is_none());
    assert_eq!(s.list_users().unwrap(), vec![user]);
}

fn keys_are_listed_oldest_first_and_secrets_keep_the_first_value(b: &dyn Backend) {
    let store = b.open();
    for created in [30, 10, 20] {
        let key = StoredSigningKey {
            created,
            wrapped: vec![created as u8],
        };
        store.add_signing_key("https://issuer", &key).unwrap();
    }
    let listed: Vec<i64> = store
        .list_signing_keys("https://issuer")
        .unwrap()
        .iter()
        .map(|k| k.created)
        .collect();
    assert_eq!(listed, [10, 20, 30]);
    assert!(store.list_signing_keys("other").unwrap().is_empty());
    assert!(store.delete_signing_key("https://issuer", 10).unwrap());
    assert!(!store.delete_signing_key("https://issuer", 10).unwrap());
    assert_eq!(store.secret("hmac").unwrap(), None);
    assert_eq!(store.secret_or_insert("hmac", b"first").unwrap(), b"first");
    assert_eq!(
        store.secret("hmac").unwrap().as_deref(),
        Some(&b"first"[..])
    );
    assert_eq!(store.secret_or_insert("hmac", b"second").unwrap(), b"first");
}

fn a_writer_without_replace_never_replaces_and_the_quota_counts_the_project(b: &dyn Backend) {
    let s = b.open();
    bucket(s.as_ref());
    let creator = PutLimits {
        may_replace: false,
        project_quota: None,
    };
    assert_eq!(
        s.put_object(&object("m", 1), Preconditions::default(), creator)
            .unwrap(),
        Ok(None),
        "creating is allowed"
    );
    // The object exists by the time the write commits: refused, whatever the preconditions.
    for pre in [Preconditions::default(), generation_match(1)] {
        assert_eq!(
            s.put_object(&object("m", 2), pre, creator).unwrap(),
            Err(PutRefused::WouldReplace(1))
        );
    }
    assert_eq!(s.get_object("b1", "m").unwrap(), Some(object("m", 1)));
    // Objects are 3 bytes: one live, so a quota of 5 takes a replacement but not a second.
    assert_eq!(
        s.project_storage_bytes(&ProjectId::parse("alpha-1").unwrap())
            .unwrap(),
        3
    );
    let quota = |q| PutLimits {
        may_replace: true,
        project_quota: Some(q),
    };
    assert_eq!(
        s.put_object(&object("m", 2), Preconditions::default(), quota(5))
            .unwrap(),
        Ok(Some("blob-1".into()))
    );
    assert_eq!(
        s.put_object(&object("n", 3), Preconditions::default(), quota(5))
            .unwrap(),
        Err(PutRefused::OverQuota { used: 3, quota: 5 })
    );
    assert_eq!(s.get_object("b1", "n").unwrap(), None);
    // A bucket deleted while its upload streamed: NotFound, not a database error.
    let mut orphan = object("o", 4);
    orphan.bucket = "gone".into();
    assert!(matches!(
        s.put_object(&orphan, Preconditions::default(), PutLimits::NONE),
        Err(StoreError::NotFound(m)) if m.contains("gone")
    ));
}

fn deleting_a_bucket_cancels_its_upload_sessions(b: &dyn Backend) {
    let s = b.open();
    bucket(s.as_ref());
    for (id, received) in [("u1", 0), ("u2", 4096)] {
        s.create_upload_session(&UploadSession {
            upload_id: id.into(),
            bucket: "b1".into(),
            name: format!("{id}.bin"),
            content_type: "application/octet-stream".into(),
            preconditions: Preconditions::default(),
            creator: None,
            received,
            create_time: 100,
        })
        .unwrap();
    }
    let mut cancelled: Vec<_> = s
        .delete_bucket("b1")
        .unwrap()
        .expect("the bucket existed")
        .into_iter()
        .map(|u| (u.upload_id, u.received))
        .collect();
    cancelled.sort();
    assert_eq!(cancelled, [("u1".into(), 0), ("u2".into(), 4096)]);
    assert!(s.get_upload_session("u1").unwrap().is_none());
    assert!(s.get_bucket("b1").unwrap().is_none());
    assert_eq!(s.delete_bucket("b1").unwrap(), None, "already gone");
}
