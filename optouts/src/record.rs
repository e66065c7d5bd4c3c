//! Opting phones out and in: the contact's event and the `opt_outs` row, in one transaction.
//!
//! The `opt_outs` row is what the dispatcher reads at claim time (one indexed query per batch);
//! it is written with the event, so an opt-out is honoured from the moment it commits, with no
//! projector in between. A change that changes nothing (a second "STOP") writes nothing and
//! reports `changed: false`, so a confirmation goes back once per opt-out.

use chrono::{DateTime, Utc};
use herald_domain::contact::{contact_id, Contact, ContactCommand, ContactEvent, ContactKey};
use herald_domain::opt_out::{Intent, OptOutSource};
use herald_domain::phone::Phone;
use herald_domain::store::{self, StoreError};
use herald_domain::DomainError;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Fresh attempts when a concurrent writer got in the way.
const ATTEMPTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The phone is no contact of the tenant and has nothing to opt in from.
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Invalid(DomainError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl Error {
    fn retryable(&self) -> bool {
        match self {
            Error::Store(e) => {
                e.is_retryable()
                    || matches!(e, StoreError::Database(sqlx::Error::Database(d))
                        if d.code().as_deref() == Some("23505"))
            }
            _ => false,
        }
    }
}

/// One phone opting out (`Intent::Stop`) or back in (`Intent::Start`).
#[derive(Debug, Clone)]
pub struct Change {
    pub tenant_id: Uuid,
    pub phone: Phone,
    pub intent: Intent,
    pub source: OptOutSource,
    pub at: DateTime<Utc>,
}

/// What became of one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `changed`: the phone was not opted out (Stop) or was (Start) and now is the other way.
    Applied { changed: bool },
    /// The contact refused it (a start from a phone that is no contact); nothing was written.
    Refused(String),
}

/// Applies every change in the caller's transaction: one load and one insert for the contacts,
/// one statement each for the `opt_outs` rows to add and to remove.
pub async fn apply(conn: &mut PgConnection, changes: &[Change]) -> Result<Vec<Outcome>, Error> {
    if changes.is_empty() {
        return Ok(vec![]);
    }
    let commands = changes
        .iter()
        .map(|c| {
            let key = ContactKey::Phone(c.phone.clone());
            let command = match c.intent {
                Intent::Stop => ContactCommand::OptOut {
                    tenant_id: c.tenant_id,
                    key: key.clone(),
                    source: c.source,
                    at: c.at,
                },
                Intent::Start => ContactCommand::OptIn {
                    tenant_id: c.tenant_id,
                    source: c.source,
                    at: c.at,
                },
            };
            (contact_id(c.tenant_id, &key), command)
        })
        .collect();
    let results = store::execute_batch::<Contact>(&mut *conn, commands, &()).await?;
    let (mut out_t, mut out_p, mut out_s, mut out_at) = (vec![], vec![], vec![], vec![]);
    let (mut in_t, mut in_p) = (vec![], vec![]);
    let mut outcomes = Vec::with_capacity(changes.len());
    for (change, result) in changes.iter().zip(results) {
        let events = match result {
            Ok(events) => events,
            Err(e) => {
                outcomes.push(Outcome::Refused(e.to_string()));
                continue;
            }
        };
        // the last opt-out event is the state (a re-created contact restates an old one first)
        let mut changed = false;
        for event in &events {
            match event {
                ContactEvent::ContactOptedOut { source, at } => {
                    out_t.push(change.tenant_id);
                    out_p.push(change.phone.as_str().to_string());
                    out_s.push(source.as_str());
                    out_at.push(*at);
                    changed = true;
                }
                ContactEvent::ContactOptedIn { .. } => {
                    in_t.push(change.tenant_id);
                    in_p.push(change.phone.as_str().to_string());
                    changed = true;
                }
                _ => {}
            }
        }
        outcomes.push(Outcome::Applied { changed });
    }
    if !in_t.is_empty() {
        sqlx::query(
            "DELETE FROM opt_outs o USING UNNEST($1::uuid[], $2::text[]) AS k(t, p)
              WHERE o.tenant_id = k.t AND o.phone = k.p",
        )
        .bind(&in_t)
        .bind(&in_p)
        .execute(&mut *conn)
        .await?;
    }
    if !out_t.is_empty() {
        // DISTINCT ON: one batch may hold two opt-outs of one phone (an old one restated first)
        sqlx::query(
            "INSERT INTO opt_outs (tenant_id, phone, source, opted_out_at)
             SELECT DISTINCT ON (t, p) t, p, s, a
               FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::timestamptz[])
                    WITH ORDINALITY AS x(t, p, s, a, n)
              ORDER BY t, p, n DESC
             ON CONFLICT (tenant_id, phone) DO UPDATE
                SET source = EXCLUDED.source, opted_out_at = EXCLUDED.opted_out_at",
        )
        .bind(&out_t)
        .bind(&out_p)
        .bind(&out_s)
        .bind(&out_at)
        .execute(&mut *conn)
        .await?;
    }
    Ok(outcomes)
}

/// Opts one phone out, in a transaction of its own (retrying races). `true`: it was not opted
/// out before.
pub async fn opt_out(
    pool: &PgPool,
    tenant_id: Uuid,
    phone: Phone,
    source: OptOutSource,
) -> Result<bool, Error> {
    one(pool, tenant_id, phone, Intent::Stop, source).await
}

/// Opts one phone back in. `true`: it was opted out; [`Error::NotFound`]: no such contact.
pub async fn opt_in(
    pool: &PgPool,
    tenant_id: Uuid,
    phone: Phone,
    source: OptOutSource,
) -> Result<bool, Error> {
    one(pool, tenant_id, phone, Intent::Start, source).await
}

async fn one(
    pool: &PgPool,
    tenant_id: Uuid,
    phone: Phone,
    intent: Intent,
    source: OptOutSource,
) -> Result<bool, Error> {
    let change = Change {
        tenant_id,
        phone,
        intent,
        source,
        at: Utc::now(),
    };
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let mut tx = pool.begin().await?;
        match apply(&mut tx, std::slice::from_ref(&change)).await {
            Ok(outcomes) => {
                tx.commit().await?;
                return match outcomes.into_iter().next() {
                    Some(Outcome::Applied { changed }) => Ok(changed),
                    Some(Outcome::Refused(_)) if intent == Intent::Start => Err(Error::NotFound),
                    Some(Outcome::Refused(reason)) => {
                        Err(Error::Invalid(DomainError::invalid("phone", &reason)))
                    }
                    None => Ok(false),
                };
            }
            Err(e) if e.retryable() => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or(Error::Store(StoreError::Conflict(1))))
}

/// The phones of `phones` the tenant may not send campaigns to (one query).
pub async fn opted_out(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    phones: &[String],
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT phone FROM opt_outs WHERE tenant_id = $1 AND phone = ANY($2) ORDER BY phone",
    )
    .bind(tenant_id)
    .bind(phones)
    .fetch_all(&mut *conn)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone(digits: &str) -> Phone {
        Phone::from_normalized(digits).expect("digits")
    }

    async fn rows(pool: &PgPool) -> Vec<(Uuid, String, String)> {
        sqlx::query_as("SELECT tenant_id, phone, source FROM opt_outs ORDER BY tenant_id, phone")
            .fetch_all(pool)
            .await
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn an_opt_out_is_one_row_for_its_tenant_until_the_opt_in() {
        let pool = herald_migrations::testing::fresh_database()
            .await
            .expect("a fresh database (HERALD_TEST_DATABASE_URL)");
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let p = phone("6281234567890");
        assert!(opt_out(&pool, a, p.clone(), OptOutSource::Keyword)
            .await
            .expect("opted out"));
        // a second stop changes nothing
        assert!(!opt_out(&pool, a, p.clone(), OptOutSource::Manual)
            .await
            .expect("again"));
        assert_eq!(
            rows(&pool).await,
            vec![(a, p.as_str().into(), "keyword".into())]
        );
        let mut conn = pool.acquire().await.expect("conn");
        let phones = vec![p.as_str().to_string(), "6289999999999".to_string()];
        assert_eq!(
            opted_out(&mut conn, a, &phones).await.expect("read"),
            vec![p.as_str().to_string()]
        );
        // another tenant's same phone is not opted out, and cannot opt in from nothing
        assert_eq!(
            opted_out(&mut conn, b, &phones).await.expect("read"),
            Vec::<String>::new()
        );
        assert!(matches!(
            opt_in(&pool, b, p.clone(), OptOutSource::Manual).await,
            Err(Error::NotFound)
        ));
        assert!(opt_in(&pool, a, p.clone(), OptOutSource::Keyword)
            .await
            .expect("opted in"));
        assert_eq!(rows(&pool).await, vec![]);
    }
}
