//! Connections the database drops (a restart, a failover, an idle timeout) cost no failed
//! read or transaction: both run again on a fresh connection.

mod support;

use cloister_domain::{Email, Policy, ProjectId, ProjectNumber};
use cloister_store::{DEFAULT_DATABASE_CONNECTIONS, MetadataStore, PostgresStore, ProjectRecord};
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
    let store = PostgresStore::open(&url, DEFAULT_DATABASE_CONNECTIONS).unwrap();
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

/// Sessions on the store's database other than the one asking.
fn sessions(url: &str) -> i64 {
    let mut admin = postgres::Client::connect(url, postgres::NoTls).unwrap();
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0)
}

#[test]
fn a_replica_keeps_the_connections_it_is_given_and_no_more() {
    // Replicas × connections must fit the server's max_connections: each replica's share is
    // what the operator gives it, even under more concurrent calls than that.
    let url = Postgres::database();
    let store = PostgresStore::open(&url, 3).unwrap();
    fill_pool(&store);
    assert_eq!(sessions(&url), 3);
    drop(store);

    let err = match PostgresStore::open(&url, 0) {
        Ok(_) => panic!("a pool of no connections was opened"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("at least 1"), "{err}");
}
