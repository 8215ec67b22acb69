//! Connections the database drops (a restart, a failover, an idle timeout) cost no failed
//! read or transaction: both run again on a fresh connection.

mod support;

use cloister_domain::{Email, Policy, ProjectId, ProjectNumber};
use cloister_store::{DEFAULT_DATABASE_CONNECTIONS, ProjectRecord, Store};
use sqlx::Connection;
use support::postgres::Postgres;

/// The one number `sql` answers, asked on a connection of its own.
async fn ask(url: &str, sql: &'static str) -> i64 {
    let mut admin = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar(sql).fetch_one(&mut admin).await.unwrap()
}

/// Terminates every other session on the store's database, as a restart would.
async fn drop_connections(url: &str) -> i64 {
    ask(
        url,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_connections_cost_no_failed_read_or_transaction() {
    let url = Postgres::database();
    let store = Store::open_postgres(&url, DEFAULT_DATABASE_CONNECTIONS)
        .await
        .unwrap();
    let project = |id: &str, number| ProjectRecord {
        id: ProjectId::parse(id).unwrap(),
        number: ProjectNumber(number),
        display_name: id.into(),
        create_time: time::OffsetDateTime::UNIX_EPOCH,
        creator: "user:a@x.com".into(),
    };
    // Open the pool's connections, then have the server drop them all.
    fill_pool(&store).await;
    assert!(
        drop_connections(&url).await > 0,
        "the store held connections"
    );
    assert!(
        store.list_projects().await.unwrap().is_empty(),
        "a read runs again"
    );
    // Several rounds, because whether the client meets the server's last words or the closed
    // socket first is a race: either must cost nothing.
    for round in 0..6 {
        fill_pool(&store).await;
        assert!(drop_connections(&url).await > 0);
        store
            .create_project(
                &project(&format!("project-{round}"), 123456789012 + round),
                &Policy::default(),
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            store.list_projects().await.unwrap().len(),
            round as usize + 1,
            "a transaction runs again, once"
        );
    }
}

/// Has the store open connections up to its pool size, all idle afterwards.
async fn fill_pool(store: &Store) {
    let calls = (0..8).map(|i| async move {
        for _ in 0..10 {
            store
                .get_user(&Email::parse(&format!("u{i}@x.com")).unwrap())
                .await
                .unwrap();
        }
    });
    futures::future::join_all(calls).await;
}

/// Sessions on the store's database other than the one asking.
async fn sessions(url: &str) -> i64 {
    ask(
        url,
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_keeps_the_connections_it_is_given_and_no_more() {
    // Replicas × connections must fit the server's max_connections: each replica's share is
    // what the operator gives it, even under more concurrent calls than that.
    let url = Postgres::database();
    let store = Store::open_postgres(&url, 3).await.unwrap();
    fill_pool(&store).await;
    assert_eq!(sessions(&url).await, 3);
    drop(store);

    let err = match Store::open_postgres(&url, 0).await {
        Ok(_) => panic!("a pool of no connections was opened"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("at least 1"), "{err}");
}
