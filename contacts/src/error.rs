//! What can go wrong writing contacts or reading an import, in Herald's terms; the HTTP crate
//! turns each into its answer.

use herald_domain::store::StoreError;
use herald_domain::DomainError;

/// Why a contact write or an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ContactsError {
    /// Input that cannot be used, naming what (`csv`, `phone`, ...).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// Text Postgres cannot store (U+0000) in `field` (docs/decisions/0037).
    #[error("{field}: contains U+0000 (NUL)")]
    InvalidText { field: String },
    /// Over an import's size or row limit.
    #[error("{0}")]
    TooLarge(String),
    /// The upload failed before it ended.
    #[error("cannot read the body: {0}")]
    BodyFailed(String),
    /// The upload sent nothing for the server's body idle timeout.
    #[error("the request body stopped arriving")]
    BodyStalled,
    /// An import stopped part-way after some of its batches were committed: what stopped it, and
    /// what was applied before.
    #[error("{cause}")]
    Stopped {
        cause: Box<ContactsError>,
        applied: ImportProgress,
    },
    /// The contact's own rules refused the command.
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// Herald's own failure (a validated upsert refused, a reader task that died).
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ContactsError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ContactsError::Invalid {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// What an import that stopped part-way had applied (its rows are exactly those before the row
/// where it stopped).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportProgress {
    /// Data rows applied (in committed batches).
    pub rows: usize,
    /// Line where the last applied row starts (1: none yet).
    pub through_line: u64,
    pub imported: usize,
    pub matched: usize,
    pub rejected_count: usize,
}
