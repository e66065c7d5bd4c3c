//! Is a failure the database's moment or the data's fault? Runtimes that park what fails on its
//! own (projectors, the webhook inbox) must never park because the database was briefly away
//! (docs/decisions/0035-poison-events-are-parked.md).

use crate::store::StoreError;

/// True when `error` (or what caused it) is a passing condition or a fault of the system rather
/// than of the data being processed: the connection or pool failed, Postgres asked for a retry
/// (serialization failure, deadlock, lock timeout, shutdown, out of resources), the schema or
/// the code does not match (an undefined table or column), or a store conflict. Retrying the
/// same data later may well succeed, so it must not be parked.
///
/// False for what the data itself causes every time: a data exception (SQLSTATE class 22, e.g.
/// a NUL character in text), a constraint violation (23), a cardinality violation (21), a
/// program limit (54, e.g. an index row too large), an exception raised by a trigger (P0), a
/// value that does not decode, a missing row, and every error that is not the database's
/// (an event that does not parse, a value out of range).
pub fn is_transient(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(e) = e.downcast_ref::<sqlx::Error>() {
            return sqlx_is_transient(e);
        }
        if let Some(e) = e.downcast_ref::<StoreError>() {
            match e {
                StoreError::Database(e) => return sqlx_is_transient(e),
                StoreError::Conflict(_) | StoreError::OutOfOrder => return true,
                StoreError::Serde(_) => return false,
            }
        }
        cause = e.source();
    }
    false
}

fn sqlx_is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            let code = db.code();
            let class = code.as_deref().map(|c| c.get(..2).unwrap_or(c));
            !matches!(class, Some("21" | "22" | "23" | "54" | "P0"))
        }
        sqlx::Error::RowNotFound
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Encode(_)
        | sqlx::Error::InvalidArgument(_) => false,
        // the connection, the pool, the protocol, the schema: not the data
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_is_transient_the_data_is_not() {
        let io = sqlx::Error::Io(std::io::Error::other("reset"));
        assert!(is_transient(&io));
        assert!(is_transient(&sqlx::Error::PoolTimedOut));
        assert!(is_transient(&StoreError::OutOfOrder));
        assert!(!is_transient(&sqlx::Error::RowNotFound));
        let bad_json = serde_json::from_str::<u8>("x").unwrap_err();
        assert!(!is_transient(&bad_json));
        assert!(!is_transient(&StoreError::Serde(
            serde_json::from_str::<u8>("x").unwrap_err()
        )));
        assert!(is_transient(&StoreError::Database(sqlx::Error::PoolClosed)));
    }
}
