//! What the metadata store fails with. Callers branch on the variants (a 404, a 409, a retry
//! with a fresh etag); the database's own error stays attached as the source.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0} was not found")]
    NotFound(String),
    /// A container still holds what must go first; the text names it ("bucket b holds 2
    /// objects").
    #[error("{0}; delete them first")]
    NotEmpty(String),
    /// Another writer changed the record since the caller read it.
    #[error(
        "the etag {given:?} is stale: {resource} changed since it was read; read it again and retry"
    )]
    StaleEtag { resource: String, given: String },
    /// The database refused or failed a statement; `statement` says which.
    #[error("metadata database error in `{statement}`: {source}")]
    Database {
        statement: String,
        #[source]
        source: sqlx::Error,
    },
    /// The database could not be reached or opened.
    #[error("{what}")]
    Unavailable {
        what: String,
        #[source]
        source: sqlx::Error,
    },
    /// A stored value does not parse: the database holds something Cloister did not write.
    #[error("stored {what} does not parse: {detail}")]
    Corrupt { what: String, detail: String },
    /// The store cannot be used as asked (a newer schema, a pool of no connections, a bad URL);
    /// the text says what to do.
    #[error("{0}")]
    Unusable(String),
    /// Creating one more would pass a quota (`scope` holds `limit` `kind` already); nothing
    /// was created.
    #[error("{scope} already holds {limit} {kind}, its quota; nothing was created")]
    QuotaExceeded {
        kind: &'static str,
        scope: String,
        limit: u64,
    },
    /// A value could not be resealed for a new key-encryption key; nothing was changed.
    #[error("{place}: {detail}; nothing was changed")]
    Reseal { place: String, detail: String },
}

impl StoreError {
    /// A stored value that does not parse.
    pub(crate) fn corrupt(what: &str, detail: impl std::fmt::Display) -> Self {
        StoreError::Corrupt {
            what: what.to_owned(),
            detail: detail.to_string(),
        }
    }

    /// The message with every cause after it, for logs (`Display` gives only the first).
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            let next = c.to_string();
            if !text.contains(&next) {
                text = format!("{text}: {next}");
            }
            cause = c.source();
        }
        text
    }
}
