//! The one place where the flows' own error types (campaigns, messages, contacts, accounts,
//! the scheduler and the event store) become Herald's envelope (docs/architecture.md, Layout).

use super::ApiError;

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Unexpected(e.into())
    }
}

impl From<herald_domain::store::StoreError> for ApiError {
    fn from(e: herald_domain::store::StoreError) -> Self {
        // a concurrent writer won the race for the same stream: the caller may simply retry
        if e.is_retryable() {
            return ApiError::Conflict {
                code: "concurrent_update",
                message: "the object changed while this request ran; try again".into(),
            };
        }
        ApiError::Unexpected(e.into())
    }
}

impl From<herald_domain::DomainError> for ApiError {
    fn from(e: herald_domain::DomainError) -> Self {
        use herald_domain::DomainError as D;
        match e {
            D::NotFound => ApiError::NotFound,
            D::AlreadyExists => ApiError::Conflict {
                code: "already_exists",
                message: "it already exists".into(),
            },
            D::Invalid { field, message } => ApiError::validation(&field, message),
            D::Conflict(message) => ApiError::Conflict {
                code: "invalid_state",
                message,
            },
        }
    }
}

impl From<herald_scheduler::Error> for ApiError {
    fn from(e: herald_scheduler::Error) -> Self {
        use herald_scheduler::Error as E;
        match e {
            E::Store(s) => s.into(),
            E::Database(d) => d.into(),
        }
    }
}

impl From<herald_campaigns::Error> for ApiError {
    fn from(e: herald_campaigns::Error) -> Self {
        use herald_campaigns::Error as E;
        match e {
            E::Domain(d) => d.into(),
            E::Store(s) => s.into(),
            E::Database(d) => d.into(),
            E::Json(j) => ApiError::Unexpected(j.into()),
            E::Queue(q) => q.into(),
        }
    }
}

impl From<herald_campaigns::intake::IntakeError> for ApiError {
    fn from(e: herald_campaigns::intake::IntakeError) -> Self {
        use herald_campaigns::intake::IntakeError as E;
        match e {
            E::TooManyRecipients(m) => ApiError::PayloadTooLarge(m),
            E::Invalid {
                field,
                message,
                details,
            } => ApiError::Validation {
                field,
                message,
                details,
            },
            E::NoTenant => ApiError::NotFound,
            E::Campaign(c) => c.into(),
        }
    }
}

impl From<herald_messages::Error> for ApiError {
    fn from(e: herald_messages::Error) -> Self {
        use herald_messages::Error as E;
        match e {
            E::Domain(d) => d.into(),
            E::Store(s) => s.into(),
            E::Database(d) => d.into(),
            E::Json(j) => ApiError::Unexpected(j.into()),
        }
    }
}

impl From<cqrs_es::AggregateError<herald_domain::DomainError>> for ApiError {
    fn from(e: cqrs_es::AggregateError<herald_domain::DomainError>) -> Self {
        match e {
            cqrs_es::AggregateError::UserError(d) => d.into(),
            cqrs_es::AggregateError::AggregateConflict => ApiError::Conflict {
                code: "concurrent_update",
                message: "the object changed while this request ran; try again".into(),
            },
            other => ApiError::Unexpected(anyhow::anyhow!("{other}")),
        }
    }
}

// Accounts (herald-accounts): plans, attempt counters, number ownership.

impl From<herald_accounts::plans::PlanError> for ApiError {
    fn from(e: herald_accounts::plans::PlanError) -> Self {
        use herald_accounts::plans::PlanError as E;
        let message = e.to_string();
        match e {
            E::NoTenant => ApiError::NotFound,
            E::SubscriptionExpired { plan, expires_at } => ApiError::PlanRefused {
                code: "subscription_expired",
                message,
                details: Some(serde_json::json!({ "plan": plan, "expires_at": expires_at })),
            },
            E::ApiCallsOverLimit {
                limit,
                resets_at,
                retry_after_secs,
                ..
            } => ApiError::TooManyRequests {
                code: "rate_limited",
                message,
                details: Some(serde_json::json!({"limit": limit, "resets_at": resets_at})),
                retry_after_secs,
            },
            E::Database(d) => d.into(),
        }
    }
}

impl From<herald_accounts::throttle::ThrottleError> for ApiError {
    fn from(e: herald_accounts::throttle::ThrottleError) -> Self {
        use herald_accounts::throttle::ThrottleError as E;
        let message = e.to_string();
        match e {
            E::TooManyAttempts {
                limit,
                window_secs,
                retry_after_secs,
                ..
            } => ApiError::TooManyRequests {
                code: "too_many_attempts",
                message,
                details: Some(serde_json::json!({
                    "limit": limit,
                    "window_secs": window_secs,
                    "retry_after_secs": retry_after_secs,
                })),
                retry_after_secs: retry_after_secs.max(1) as u64,
            },
            E::Database(d) => d.into(),
        }
    }
}

impl From<herald_accounts::ownership::OwnershipError> for ApiError {
    fn from(e: herald_accounts::ownership::OwnershipError) -> Self {
        use herald_accounts::ownership::OwnershipError as E;
        let message = e.to_string();
        match e {
            E::TokenTaken {
                own_session: Some(session),
            } => ApiError::Conflict {
                code: "gateway_token_taken",
                message: format!("this WuzAPI token is already linked as your session {session}"),
            },
            E::TokenTaken { own_session: None } => ApiError::Conflict {
                code: "gateway_token_taken",
                message,
            },
            E::PhoneNumberIdTaken => ApiError::Conflict {
                code: "phone_number_id_taken",
                message,
            },
            E::InvalidAccessToken | E::AccessTokenRequired | E::MetaRefused(_) => {
                ApiError::validation("meta_access_token", message)
            }
            E::MetaUnavailable(_) => ApiError::GatewayUnavailable(message),
            E::Database(d) => d.into(),
        }
    }
}

// Contacts (herald-contacts): contact writes and imports.

impl From<herald_contacts::ContactsError> for ApiError {
    fn from(e: herald_contacts::ContactsError) -> Self {
        use herald_contacts::ContactsError as E;
        match e {
            E::Invalid { field, message } => ApiError::validation(&field, message),
            E::InvalidText { field } => ApiError::invalid_text(&field),
            E::TooLarge(m) => ApiError::PayloadTooLarge(m),
            E::BodyFailed(m) => {
                ApiError::bad_request("invalid_body", format!("cannot read the body: {m}"))
            }
            E::BodyStalled => ApiError::BodyTimeout,
            E::Stopped { cause, applied } => {
                let cause = ApiError::from(*cause);
                let message = if applied.rows == 0 {
                    format!("{}; nothing was imported", cause.body().error.message)
                } else {
                    format!(
                        "{}; the {} rows through line {} were imported and nothing after \
                         (re-running the file is safe: rows already applied change nothing)",
                        cause.body().error.message,
                        applied.rows,
                        applied.through_line
                    )
                };
                ApiError::PartlyApplied {
                    cause: Box::new(cause),
                    message,
                    applied: serde_json::json!({
                        "rows": applied.rows,
                        "through_line": applied.through_line,
                        "imported": applied.imported,
                        "matched": applied.matched,
                        "rejected_count": applied.rejected_count,
                    }),
                }
            }
            E::Domain(d) => d.into(),
            E::Store(s) => s.into(),
            E::Database(d) => d.into(),
            E::Internal(e) => ApiError::Unexpected(e),
        }
    }
}

impl From<herald_optouts::Error> for ApiError {
    fn from(e: herald_optouts::Error) -> Self {
        use herald_optouts::Error as E;
        match e {
            E::NotFound => ApiError::NotFound,
            E::Invalid(d) => d.into(),
            E::Store(s) => s.into(),
            E::Database(d) => d.into(),
        }
    }
}
