//! Writing many contacts at once (a batch of a CSV import, a gateway contact sync) through the
//! event store's bulk paths: contacts that do not exist yet go in with `store::append_new` (fresh
//! streams, one multi-row insert), existing ones through `store::execute_batch` (one load, one
//! insert), in chunks, in ONE transaction, so a call is all there or not at all. A 2,000-contact
//! batch is a few statements, not 2,000 round trips.

use std::collections::HashMap;

use herald_domain::contact::{contact_id, Contact, ContactCommand, ContactEvent, Upsert};
use herald_domain::store::{self, StoreError};
use sqlx::{Acquire, PgPool};

use crate::error::ContactsError;

/// Contacts per bulk statement.
const CHUNK: usize = 2_000;
/// Fresh attempts when a concurrent writer got in the way (a retryable store error, or another
/// request creating one of the same contacts a moment earlier).
const ATTEMPTS: usize = 5;

/// What a bulk upsert did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Contacts that did not exist (or were deleted) and were created.
    pub created: usize,
    /// Contacts that existed.
    pub existing: usize,
    /// Existing contacts that changed (at least one event appended).
    pub changed: usize,
}

fn retryable(e: &StoreError) -> bool {
    e.is_retryable()
        || matches!(e, StoreError::Database(sqlx::Error::Database(d)) if d.code().as_deref() == Some("23505"))
}

/// What became of one upsert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The contact did not exist (or was deleted) and was created.
    Created,
    /// The contact existed; `changed` when at least one event was appended.
    Existed { changed: bool },
    /// The contact refused it (e.g. tags added past the limit to an existing contact's); nothing
    /// was written for it.
    Refused(String),
}

/// Upserts every contact (keys must be distinct; the caller merges duplicates first). A contact
/// refusing its upsert is an error (none of them is written).
pub async fn upsert_all(pool: &PgPool, upserts: Vec<Upsert>) -> Result<Written, ContactsError> {
    let mut written = Written::default();
    for (applied, upsert) in upsert_each(pool, &upserts).await?.into_iter().zip(&upserts) {
        match applied {
            Applied::Created => written.created += 1,
            Applied::Existed { changed } => {
                written.existing += 1;
                written.changed += usize::from(changed);
            }
            Applied::Refused(reason) => {
                return Err(ContactsError::Internal(anyhow::anyhow!(
                    "contact {} refused a validated upsert: {reason}",
                    upsert.key.as_str()
                )))
            }
        }
    }
    Ok(written)
}

/// Upserts every contact (keys must be distinct) in one transaction, saying what became of each,
/// in order. An existing contact refusing its upsert is reported, not fatal.
pub async fn upsert_each(pool: &PgPool, upserts: &[Upsert]) -> Result<Vec<Applied>, ContactsError> {
    if upserts.is_empty() {
        return Ok(Vec::new()); // a batch of rejected rows only
    }
    let mut last = None;
    for attempt in 0..ATTEMPTS {
        match try_upsert_each(pool, upserts).await {
            Ok(applied) => return Ok(applied),
            Err(Failed::Store(e)) if retryable(&e) => {
                tracing::debug!(attempt, error = %e, "bulk contact upsert raced; retrying");
                last = Some(e);
            }
            Err(Failed::Store(e)) => return Err(e.into()),
            Err(Failed::Other(e)) => return Err(e),
        }
    }
    Err(last
        .map(ContactsError::from)
        .unwrap_or_else(|| ContactsError::Internal(anyhow::anyhow!("bulk upsert gave up"))))
}

/// A failed attempt: a store error may be a race worth another attempt, the rest is final.
enum Failed {
    Other(ContactsError),
    Store(StoreError),
}

impl From<StoreError> for Failed {
    fn from(e: StoreError) -> Self {
        Failed::Store(e)
    }
}

impl From<sqlx::Error> for Failed {
    fn from(e: sqlx::Error) -> Self {
        Failed::Store(StoreError::Database(e))
    }
}

async fn try_upsert_each(pool: &PgPool, upserts: &[Upsert]) -> Result<Vec<Applied>, Failed> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let mut applied = Vec::with_capacity(upserts.len());
    for chunk in upserts.chunks(CHUNK) {
        let ids: Vec<String> = chunk
            .iter()
            .map(|u| contact_id(u.tenant_id, &u.key))
            .collect();
        let loaded: HashMap<String, (Contact, i64)> =
            store::load_many::<Contact>(&mut tx, &ids).await?;
        let mut outcomes: Vec<Option<Applied>> = vec![None; chunk.len()];
        let mut fresh = Vec::new();
        let mut existing = Vec::new();
        for (i, (id, upsert)) in ids.into_iter().zip(chunk).enumerate() {
            let command = ContactCommand::Upsert(upsert.clone());
            match loaded.get(&id) {
                // never seen: a fresh stream
                None => {
                    fresh.push((id, command));
                    outcomes[i] = Some(Applied::Created);
                }
                // existing, or deleted (its stream goes on with a new ContactCreated)
                Some((contact, _)) => existing.push((i, id, command, contact.exists)),
            }
        }
        // existing streams first: this transaction's first append must come after what it read
        let commands: Vec<(String, ContactCommand)> = existing
            .iter()
            .map(|(_, id, c, _)| (id.clone(), c.clone()))
            .collect();
        let results = store::execute_batch::<Contact>(&mut tx, commands, &()).await?;
        for ((i, _, _, existed), result) in existing.iter().zip(results) {
            outcomes[*i] = Some(match result {
                Err(e) => Applied::Refused(e.to_string()),
                Ok(_) if !existed => Applied::Created,
                Ok(events) => Applied::Existed {
                    changed: !events.is_empty(),
                },
            });
        }
        if let Err((id, e)) = store::append_new::<Contact>(&mut tx, fresh, &()).await? {
            return Err(Failed::Other(ContactsError::Internal(anyhow::anyhow!(
                "new contact {id} refused a validated upsert: {e}"
            ))));
        }
        applied.extend(
            outcomes
                .into_iter()
                .map(|o| o.unwrap_or_else(|| Applied::Refused("not applied".into()))),
        );
    }
    tx.commit().await?;
    Ok(applied)
}

/// Whether any of `events` created the contact (`POST /contacts` answers 201 then).
pub fn created(events: &[ContactEvent]) -> bool {
    events
        .iter()
        .any(|e| matches!(e, ContactEvent::ContactCreated { .. }))
}

/// Runs single commands (one contact) in a transaction, retrying races.
pub async fn execute(
    pool: &PgPool,
    id: String,
    command: ContactCommand,
) -> Result<Vec<ContactEvent>, ContactsError> {
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let mut tx = pool.begin().await?;
        match store::execute_batch::<Contact>(&mut tx, vec![(id.clone(), command.clone())], &())
            .await
        {
            Ok(mut outcomes) => {
                let events = outcomes
                    .pop()
                    .ok_or_else(|| ContactsError::Internal(anyhow::anyhow!("no outcome")))??;
                tx.commit().await?;
                return Ok(events);
            }
            Err(e) if retryable(&e) => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last
        .map(ContactsError::from)
        .unwrap_or_else(|| ContactsError::Internal(anyhow::anyhow!("contact write gave up"))))
}
