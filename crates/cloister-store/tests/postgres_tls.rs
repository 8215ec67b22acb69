//! TLS to PostgreSQL as a database URL asks for it (libpq's `sslmode` and `sslrootcert`): used
//! when asked, the server's certificate verified, and every misconfiguration named.

mod support;

use cloister_domain::Email;
use cloister_store::{Store, UserRecord};
use support::postgres::Postgres;

/// Why `url` could not be opened, with every cause.
async fn refusal(url: &str) -> String {
    match Store::open_postgres(url, 1).await {
        Ok(_) => panic!("{url} opened"),
        Err(e) => e.chain(),
    }
}

#[tokio::test]
async fn tls_is_used_when_asked_and_the_servers_certificate_is_verified() {
    let url = Postgres::tls_only_database();
    let ca = Postgres::shared().ca.display().to_string();
    // The role may only connect over TLS (pg_hba.conf), so a store that works below used it.
    let e = refusal(&url).await;
    assert!(
        e.contains("pg_hba.conf") && e.contains("no encryption"),
        "{e}"
    );

    let store = Store::open_postgres(&format!("{url}?sslmode=verify-full&sslrootcert={ca}"), 1)
        .await
        .unwrap();
    let user = UserRecord {
        email: Email::parse("a@x.com").unwrap(),
        display_name: "A".into(),
        admin: false,
        create_time: time::OffsetDateTime::UNIX_EPOCH,
    };
    store.create_user(&user).await.unwrap();
    assert_eq!(store.get_user(&user.email).await.unwrap(), Some(user));
    drop(store);
    // `require` verifies too: the test CA is not among the system's roots.
    let e = refusal(&format!("{url}?sslmode=require")).await;
    assert!(
        e.contains("could not connect") && e.contains("certificate"),
        "{e}"
    );
    // Another CA than the one that signed the server's certificate.
    let e = refusal(&format!(
        "{url}?sslmode=verify-ca&sslrootcert=/etc/ssl/certs/ca-certificates.crt"
    ))
    .await;
    assert!(
        e.contains("UnknownIssuer") || e.contains("certificate"),
        "{e}"
    );
}

#[tokio::test]
async fn tls_settings_that_cannot_work_are_refused_before_connecting() {
    let url = Postgres::database();
    for (query, expected) in [
        (
            "sslmode=allow-anything",
            "sslmode=allow-anything; use disable, prefer",
        ),
        ("sslrootcert=/tmp/ca.pem", "does not ask for TLS"),
        (
            "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            "sslrootcert /nonexistent/ca.pem",
        ),
        (
            "sslmode=verify-full&sslrootcert=/etc/hostname",
            "no CA certificates in /etc/hostname",
        ),
    ] {
        let e = refusal(&format!("{url}?{query}")).await;
        assert!(e.contains(expected), "{query}: {e}");
    }
    // Other parameters pass through to the client as before.
    let plain = format!("{url}?sslmode=disable&connect_timeout=5");
    drop(Store::open_postgres(&plain, 1).await.unwrap());
}
