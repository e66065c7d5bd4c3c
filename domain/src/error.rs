//! The domain's one error type. The API maps each variant to a stable code and HTTP status.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// Missing, deleted, or another tenant's: callers cannot tell these apart on purpose.
    #[error("not found")]
    NotFound,
    #[error("already exists")]
    AlreadyExists,
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The request is valid but the object's state forbids it.
    #[error("{0}")]
    Conflict(String),
}

impl DomainError {
    pub fn invalid(field: &str, message: &str) -> Self {
        DomainError::Invalid {
            field: field.to_string(),
            message: message.to_string(),
        }
    }
}
