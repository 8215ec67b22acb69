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
    // Open the pool's connections, then have the server drop them all.
    fill_pool(&store);
    assert!(drop_connections(&url) > 0, "the store held connections");
    assert!(
        store.list_projects().unwrap().is_empty(),
        "a read runs again"
    );
    // Several rounds, because whether the client meets the server's last words or the closed
    // socket first is a race: either must cost nothing.
    for round in 0..6 {
        fill_pool(&store);
        assert!(drop_connections(&url) > 0);
        store
            .create_project(
                &project(&format!("project-{round}"), 123456789012 + round),
                &Policy::default(),
            )
            .unwrap();
        assert_eq!(
            store.list_projects().unwrap().len(),
            round as usize + 1,
            "a transaction runs again, once"
        );
    }
}

/// Has the store open connections up to its pool size, all idle afterwards.
fn fill_pool(store: &PostgresStore) {
    std::thread::scope(|s| {
        for i in 0..8 {
            s.spawn(move || {
                for _ in 0..10 {
                    store
                        .get_user(&Email::parse(&format!("u{i}@x.com")).unwrap())
                        .unwrap();
                }
            });
        }
    });
}
