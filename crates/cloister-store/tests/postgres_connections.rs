//! Connections the database drops (a restart, a failover, an idle timeout) cost no failed
//! read or transaction: both run again on a fresh connection.

mod support;

use cloister_domain::{Email, Policy, ProjectId, ProjectNumber};
use cloister_store::{MetadataStore, PostgresStore, ProjectRecord};
use support::postgres::Postgres;

/// Terminates every other session on the store's database, as a restart would.
fn drop_connections(url: &str) -> i64 {
    let mut admin = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let row = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap();
    row.get(0)
}

#[test]
fn dropped_connections_cost_no_failed_read_or_transaction() {
    let url = Postgres::database();
    let store = PostgresStore::open(&url).unwrap();
    let project = |id: &str, number| ProjectRecord {
        id: ProjectId::parse(id).unwrap(),
        number: ProjectNumber(number),
        display_name: id.into(),
        create_time: "t".into(),
        creator: "user:a@x.com".into(),
    };
    // Open several pooled connections, then have the server drop them all.
    std::thread::scope(|s| {
        for i in 0..4 {
            let store = &store;
            s.spawn(move || {
                for _ in 0..20 {
                    store
                        .get_user(&Email::parse(&format!("u{i}@x.com")).unwrap())
                        .unwrap();
                }
            });
        }
    });
    assert!(drop_connections(&url) > 0, "the store held connections");
    assert!(
        store.list_projects().unwrap().is_empty(),
        "a read runs again"
    );
    store
        .create_project(&project("alpha-1", 123456789012), &Policy::default())
        .unwrap();
    assert!(drop_connections(&url) > 0);
    store
        .create_project(&project("beta-22", 223456789012), &Policy::default())
        .unwrap();
    assert_eq!(
        store.list_projects().unwrap().len(),
        2,
        "a transaction runs again, once"
    );
}
