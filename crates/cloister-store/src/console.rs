//! The console's sign-in state: one-time login codes and browser sessions. Callers pass the
//! SHA-256 of each secret, never the secret, so a copy of the database signs no one in.

use time::OffsetDateTime;

use crate::db::{Row, query};
use crate::error::StoreError;
use crate::store::Store;

/// A signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// Hex SHA-256 of the session cookie's value.
    pub id_hash: String,
    /// The user the session acts as.
    pub email: String,
    /// What every state-changing form must carry (the synchronizer token).
    pub csrf_token: String,
    /// Kept to the second.
    pub create_time: OffsetDateTime,
    /// Kept to the second.
    pub expire_time: OffsetDateTime,
}

fn session_row(r: &Row) -> Result<ConsoleSession, StoreError> {
    Ok(ConsoleSession {
        id_hash: r.text(0)?,
        email: r.text(1)?,
        csrf_token: r.text(2)?,
        create_time: r.unix_time(3)?,
        expire_time: r.unix_time(4)?,
    })
}

impl Store {
    pub async fn create_console_login_code(
        &self,
        code_hash: &str,
        email: &str,
        expire_time: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let q = query(
            "INSERT INTO console_login_codes (code_hash, email, expire_time) VALUES ($1, $2, $3)",
        );
        self.db
            .execute(
                q.bind(code_hash)
                    .bind(email)
                    .bind(expire_time.unix_timestamp()),
            )
            .await?;
        Ok(())
    }

    /// The user a code signs in, once: the code is deleted by the statement that reads it, so
    /// two browsers (or replicas) racing with one code get it once. Expired codes sign no one
    /// in.
    pub async fn take_console_login_code(
        &self,
        code_hash: &str,
        now: OffsetDateTime,
    ) -> Result<Option<String>, StoreError> {
        // A write that returns rows: in a transaction, which runs on the writer.
        let taken = self
            .db
            .transaction(|tx| async move {
                let q = query(
                    "DELETE FROM console_login_codes WHERE code_hash = $1
                     RETURNING email, expire_time",
                );
                match tx.fetch_optional(q.bind(code_hash)).await? {
                    Some(r) => Ok(Some((r.text(0)?, r.unix_time(1)?))),
                    None => Ok(None),
                }
            })
            .await?;
        Ok(taken.and_then(|(email, expire_time)| (expire_time > now).then_some(email)))
    }

    /// The user a live code would sign in, without spending it: the sign-in page names the
    /// account before the button, so a link carrying someone else's code is seen for what it is.
    pub async fn console_login_code_user(
        &self,
        code_hash: &str,
        now: OffsetDateTime,
    ) -> Result<Option<String>, StoreError> {
        let q = query(
            "SELECT email FROM console_login_codes WHERE code_hash = $1 AND expire_time > $2",
        );
        self.db
            .fetch_optional(q.bind(code_hash).bind(now.unix_timestamp()))
            .await?
            .map(|r| r.text(0))
            .transpose()
    }

    pub async fn create_console_session(&self, s: &ConsoleSession) -> Result<(), StoreError> {
        let q = query(
            "INSERT INTO console_sessions (id_hash, email, csrf_token, create_time, expire_time)
             VALUES ($1, $2, $3, $4, $5)",
        );
        self.db
            .execute(
                q.bind(&s.id_hash)
                    .bind(&s.email)
                    .bind(&s.csrf_token)
                    .bind(s.create_time.unix_timestamp())
                    .bind(s.expire_time.unix_timestamp()),
            )
            .await?;
        Ok(())
    }

    /// The session, if it exists and has not expired at `now`.
    pub async fn get_console_session(
        &self,
        id_hash: &str,
        now: OffsetDateTime,
    ) -> Result<Option<ConsoleSession>, StoreError> {
        let q = query(
            "SELECT id_hash, email, csrf_token, create_time, expire_time
             FROM console_sessions WHERE id_hash = $1 AND expire_time > $2",
        );
        self.db
            .fetch_optional(q.bind(id_hash).bind(now.unix_timestamp()))
            .await?
            .as_ref()
            .map(session_row)
            .transpose()
    }

    pub async fn delete_console_session(&self, id_hash: &str) -> Result<(), StoreError> {
        let q = query("DELETE FROM console_sessions WHERE id_hash = $1");
        self.db.execute(q.bind(id_hash)).await?;
        Ok(())
    }

    /// Forgets expired codes and sessions.
    pub async fn sweep_console(&self, now: OffsetDateTime) -> Result<(), StoreError> {
        let now = now.unix_timestamp();
        for table in ["console_login_codes", "console_sessions"] {
            let q = query(format!("DELETE FROM {table} WHERE expire_time <= $1"));
            self.db.execute(q.bind(now)).await?;
        }
        Ok(())
    }
}
