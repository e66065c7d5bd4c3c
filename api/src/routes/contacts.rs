//! Contacts: upsert by phone, patch, delete, list with filters and keyset pages, CSV import, and
//! sync from the linked phone's contact list (docs/contacts.md).
//!
//! A contact is addressed in paths by its phone in any common form (normalised with the tenant's
//! default region) or, for a lid contact, by its `<digits>@lid` id. Another tenant's contact, or a
//! path that is no phone, is 404.

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use herald_domain::contact::{
    contact_id, normalise_tag, Contact, ContactCommand, ContactKey, ContactSource, Fields, TagMode,
    Upsert, MAX_NAME_CHARS,
};
use herald_domain::phone::Phone;
use herald_domain::session::Session;
use herald_domain::store;
use herald_gateway::GatewayContact;
use herald_projections::contacts::{self as read, ContactRow, Filter};
use salvo::oapi::extract::{PathParam, QueryParam};
use salvo::oapi::ToSchema;
use salvo::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::reply::{NoContent, Upserted};
use super::{parse_limit, ListOf};
use crate::auth::caller;
use crate::contact_import::{self, ImportView, Limits};
use crate::error::{json_body, ApiError};
use crate::intake::phone_reason;
use crate::state::AppState;
use herald_contacts::book::{self as contact_book, upsert_all};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpsertContact {
    /// Any common form: `+62 812-3456-7890`, `0812...` (tenant's default region), `62812...`.
    phone: String,
    name: Option<String>,
    /// Replaces the contact's tags (case-insensitive labels, stored lowercase).
    tags: Option<Vec<String>>,
    /// Extra values, merged key by key into the contact's; template variables for audiences.
    /// Keys are `[a-z_][a-z0-9_]*`; values strings, numbers or booleans.
    #[salvo(schema(value_type = Object))]
    fields: Option<Fields>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchContact {
    /// A new name; `null` or `""` clears it.
    #[serde(default, deserialize_with = "present")]
    #[salvo(schema(value_type = Option<String>))]
    name: Option<Option<String>>,
    /// Replaces the tag set.
    tags: Option<Vec<String>>,
    /// Favourites are listed first.
    favorite: Option<bool>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncContacts {
    session_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct ContactView {
    /// E.164 digits; `null` for a lid contact.
    phone: Option<String>,
    /// WhatsApp privacy id (`<digits>@lid`) of a contact synced without a phone number.
    lid: Option<String>,
    name: Option<String>,
    tags: Vec<String>,
    favorite: bool,
    #[salvo(schema(value_type = Object))]
    fields: serde_json::Value,
    /// `api`, `import` or `sync`: where the contact was first created.
    source: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<ContactRow> for ContactView {
    fn from(r: ContactRow) -> Self {
        ContactView {
            phone: r.phone,
            lid: r.lid,
            name: r.name,
            tags: r.tags,
            favorite: r.favorite,
            fields: r.fields,
            source: r.source,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SyncView {
    /// Contacts in the phone's list that Herald keeps (phones and lids).
    total: usize,
    added: usize,
    /// Existing contacts that changed (a sync never renames a contact a person named).
    updated: usize,
    /// Entries that are neither a phone nor a lid (groups, broadcast lists, unreadable ids).
    skipped: usize,
}

async fn default_region(state: &AppState, tenant_id: Uuid) -> Result<String, ApiError> {
    sqlx::query_scalar("SELECT default_region FROM tenants WHERE id = $1")
        .bind(tenant_id)
        .fetch_optional(&state.pool)
        .await?
        .ok_or(ApiError::NotFound)
}

/// A path's contact: a phone in any common form, or a `<digits>@lid` id. Anything else names no
/// contact (404).
async fn path_key(state: &AppState, tenant_id: Uuid, raw: &str) -> Result<ContactKey, ApiError> {
    if raw.trim().ends_with("@lid") {
        return ContactKey::lid(raw).ok_or(ApiError::NotFound);
    }
    let region = default_region(state, tenant_id).await?;
    Phone::parse(raw, &region)
        .map(ContactKey::Phone)
        .map_err(|_| ApiError::NotFound)
}

async fn projected(state: &AppState, tenant_id: Uuid, key: &ContactKey) -> Result<(), ApiError> {
    state
        .wait_projected(read::NAME, Contact::TYPE, &contact_id(tenant_id, key))
        .await
}

async fn view_of(
    state: &AppState,
    tenant_id: Uuid,
    key: &ContactKey,
) -> Result<ContactView, ApiError> {
    read::get(&state.pool, tenant_id, key.as_str())
        .await?
        .map(Into::into)
        .ok_or(ApiError::NotFound)
}

/// Creates a contact, or updates the one with this phone (201 when created, 200 when it existed).
#[endpoint(tags("contacts"), request_body = UpsertContact, status_codes(200, 201, 400, 401, 409, 422), security(["bearer" = []], ["api_key" = []]))]
pub async fn upsert(
    req: &mut Request,
    depot: &mut Depot,
) -> Result<Upserted<ContactView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let body: UpsertContact = json_body(req, 256 * 1024).await?;
    let region = default_region(&state, caller.tenant_id).await?;
    let phone = Phone::parse(&body.phone, &region)
        .map_err(|e| ApiError::validation("phone", phone_reason(&e)))?;
    let key = ContactKey::Phone(phone);
    let command = ContactCommand::Upsert(Upsert {
        tenant_id: caller.tenant_id,
        key: key.clone(),
        name: body.name,
        tags: body.tags,
        tag_mode: TagMode::Replace,
        fields: body.fields,
        source: ContactSource::Api,
        at: Utc::now(),
    });
    let events =
        contact_book::execute(&state.pool, contact_id(caller.tenant_id, &key), command).await?;
    projected(&state, caller.tenant_id, &key).await?;
    Ok(Upserted {
        created: contact_book::created(&events),
        body: view_of(&state, caller.tenant_id, &key).await?,
    })
}

/// One contact, by phone (any common form) or lid.
#[endpoint(tags("contacts"), status_codes(200, 401, 404, 429), security(["bearer" = []], ["api_key" = []]))]
pub async fn get(
    phone: PathParam<String>,
    depot: &mut Depot,
) -> Result<Json<ContactView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let key = path_key(&state, caller.tenant_id, &phone.into_inner()).await?;
    Ok(Json(view_of(&state, caller.tenant_id, &key).await?))
}

/// Changes a contact's name, tags (the whole set) or favourite flag.
#[endpoint(tags("contacts"), request_body = PatchContact, status_codes(200, 400, 401, 404, 409, 422), security(["bearer" = []], ["api_key" = []]))]
pub async fn patch(
    phone: PathParam<String>,
    req: &mut Request,
    depot: &mut Depot,
) -> Result<Json<ContactView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let key = path_key(&state, caller.tenant_id, &phone.into_inner()).await?;
    let body: PatchContact = json_body(req, 64 * 1024).await?;
    let command = ContactCommand::Patch {
        tenant_id: caller.tenant_id,
        name: body.name,
        tags: body.tags,
        favorite: body.favorite,
        at: Utc::now(),
    };
    contact_book::execute(&state.pool, contact_id(caller.tenant_id, &key), command).await?;
    projected(&state, caller.tenant_id, &key).await?;
    Ok(Json(view_of(&state, caller.tenant_id, &key).await?))
}

/// Deletes a contact. Posting it again later creates it afresh.
#[endpoint(tags("contacts"), status_codes(204, 401, 404, 409), security(["bearer" = []], ["api_key" = []]))]
pub async fn delete(phone: PathParam<String>, depot: &mut Depot) -> Result<NoContent, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let key = path_key(&state, caller.tenant_id, &phone.into_inner()).await?;
    let command = ContactCommand::Delete {
        tenant_id: caller.tenant_id,
        at: Utc::now(),
    };
    contact_book::execute(&state.pool, contact_id(caller.tenant_id, &key), command).await?;
    projected(&state, caller.tenant_id, &key).await?;
    Ok(NoContent)
}

fn bad_query(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_query", message)
}

/// This tenant's contacts: favourites first, then by name (unnamed last, by phone). Filters:
/// `tag` (one tag), `q` (part of the name, any case, or of the phone), `favorite` (`true`/`false`).
#[endpoint(tags("contacts"), status_codes(200, 400, 401, 429), security(["bearer" = []], ["api_key" = []]))]
pub async fn list(
    tag: QueryParam<String, false>,
    q: QueryParam<String, false>,
    favorite: QueryParam<String, false>,
    limit: QueryParam<String, false>,
    cursor: QueryParam<String, false>,
    depot: &mut Depot,
) -> Result<Json<ListOf<ContactView>>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let tag = match tag.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(t) => Some(normalise_tag(t).map_err(|e| bad_query(format!("tag: {e}")))?),
    };
    let q = match q.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(q) if q.chars().count() > MAX_NAME_CHARS => {
            return Err(bad_query("q is longer than 200 characters"))
        }
        Some(q) => Some(q.trim_start_matches('+').to_string()),
    };
    let favorite = match favorite.as_deref() {
        None | Some("") => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(bad_query("favorite must be true or false")),
    };
    let limit = parse_limit(limit.as_deref())?;
    let after = match cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(read::parse_cursor(c).ok_or_else(|| {
            ApiError::bad_request("invalid_cursor", "cursor is not one Herald gave out")
        })?),
    };
    let filter = Filter { tag, q, favorite };
    let page = read::list(&state.pool, caller.tenant_id, &filter, limit, after).await?;
    Ok(Json(ListOf {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Imports contacts from a CSV (`text/csv`, read as a stream: at most 1,000,000 rows and 256 MiB
/// by default) with a `phone` column; `name` and `tags` (`;`-separated) columns are used, every
/// other column is kept as a field. Merges by normalised phone: tags are added, fields
/// overwritten, names replaced. Invalid rows are listed in `rejected`, not fatal. Rows are
/// applied in batches as they arrive: an import stopped by a limit or an unreadable row answers
/// the error with `details.applied` (what was imported before it); re-running a file is safe.
/// A tenant runs at most 2 imports at once by default (`HERALD_IMPORTS_PER_TENANT`): one more is 429
/// `import_in_progress` with `Retry-After`.
#[endpoint(tags("contacts"), status_codes(200, 400, 401, 409, 413, 422, 429, 503), security(["bearer" = []], ["api_key" = []]))]
pub async fn import(req: &mut Request, depot: &mut Depot) -> Result<Json<ImportView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !matches!(
        essence,
        "text/csv" | "application/csv" | "text/plain" | "application/vnd.ms-excel"
    ) {
        return Err(ApiError::bad_request(
            "unsupported_media_type",
            "send the file as text/csv",
        ));
    }
    let limits = Limits {
        max_rows: state.settings.import_max_rows,
        max_bytes: state.settings.import_max_bytes,
    };
    // a body announced too large is refused before anything is read
    let announced = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|len| len > limits.max_bytes) {
        return Err(ApiError::PayloadTooLarge(format!(
            "an import is at most {} bytes; split the file",
            limits.max_bytes
        )));
    }
    // a tenant's imports at once are capped (decision 0043); the slot goes with the import's task
    let slot = state
        .pools
        .imports
        .try_acquire(caller.tenant_id)
        .map_err(|r| {
            crate::pools::over_cap(
                "import_in_progress",
                format!(
                    "this tenant already has {} imports running; wait for one to finish",
                    state.pools.imports.limits().per_key
                ),
                "contact imports",
                r,
            )
        })?;
    let region = default_region(&state, caller.tenant_id).await?;
    let body = req.take_body();
    let tenant_id = caller.tenant_id;
    // its own task: an import runs to the end of what arrived even if the client goes away
    let task = tokio::spawn(async move {
        let _slot = slot;
        contact_import::import(&state, tenant_id, region, body, limits).await
    });
    let view = task
        .await
        .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("the import task failed: {e}")))??;
    Ok(Json(view))
}

/// The name WhatsApp shows: FullName, then BusinessName, then PushName, then FirstName.
fn sync_name(contact: &GatewayContact) -> Option<String> {
    [
        &contact.full_name,
        &contact.business_name,
        &contact.push_name,
        &contact.first_name,
    ]
    .into_iter()
    .map(|n| n.trim())
    .find(|n| !n.is_empty())
    .map(|n| n.chars().take(MAX_NAME_CHARS).collect())
}

/// A gateway JID as a contact key: `<digits>[:device]@s.whatsapp.net` is a phone, `...@lid` a lid;
/// groups, broadcasts and anything unreadable are `None`.
fn sync_key(jid: &str, region: &str) -> Option<ContactKey> {
    let (user, server) = jid.trim().rsplit_once('@')?;
    match server {
        "lid" => ContactKey::lid(jid),
        "s.whatsapp.net" | "c.us" => {
            let digits = user.split_once(':').map_or(user, |(u, _)| u);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Phone::parse(&format!("+{digits}"), region)
                .ok()
                .map(ContactKey::Phone)
        }
        _ => None,
    }
}

/// Reads the linked phone's contact list (one gateway call) and merges it into the contacts:
/// new ones are added, names follow the phone unless a person set them. A second identical sync
/// adds and updates nothing.
#[endpoint(tags("contacts"), request_body = SyncContacts, status_codes(200, 400, 401, 409, 422, 502), security(["bearer" = []], ["api_key" = []]))]
pub async fn sync(req: &mut Request, depot: &mut Depot) -> Result<Json<SyncView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let body: SyncContacts = json_body(req, 64 * 1024).await?;
    let session_id: Uuid = body
        .session_id
        .parse()
        .map_err(|_| ApiError::validation("session_id", "is not a UUID"))?;
    match store::load::<Session>(&state.pool, &session_id.to_string()).await? {
        Some((s, _)) if s.visible_to(caller.tenant_id) => {}
        _ => return Err(ApiError::validation("session_id", "no such session")),
    }
    let token: String = sqlx::query_scalar(
        "SELECT gateway_token FROM session_credentials WHERE session_id = $1 AND tenant_id = $2",
    )
    .bind(session_id)
    .bind(caller.tenant_id)
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(|| ApiError::validation("session_id", "the session has no gateway token"))?;
    let listed = state.gateway.contacts(&token).await.map_err(|e| {
        ApiError::Gateway(format!(
            "the gateway could not list the contacts: {}",
            e.message()
        ))
    })?;
    let region = default_region(&state, caller.tenant_id).await?;
    let now = Utc::now();
    let mut seen = std::collections::HashSet::new();
    let mut upserts = Vec::new();
    let mut skipped = 0;
    for contact in &listed {
        let Some(key) = sync_key(&contact.jid, &region) else {
            skipped += 1;
            continue;
        };
        if !seen.insert(key.clone()) {
            continue; // the same number under two device ids
        }
        upserts.push(Upsert {
            tenant_id: caller.tenant_id,
            key,
            name: sync_name(contact),
            tags: None,
            tag_mode: TagMode::Add,
            fields: None,
            source: ContactSource::Sync,
            at: now,
        });
    }
    let total = upserts.len();
    let written = upsert_all(&state.pool, upserts).await?;
    state.wait_projected_everything(read::NAME).await?;
    tracing::info!(
        session = %session_id,
        total,
        added = written.created,
        updated = written.changed,
        skipped,
        "contacts synced"
    );
    Ok(Json(SyncView {
        total,
        added: written.created,
        updated: written.changed,
        skipped,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_names_follow_the_precedence_and_keys_are_phones_or_lids() {
        let mut c = GatewayContact {
            jid: "6281234567890@s.whatsapp.net".into(),
            full_name: " ".into(),
            business_name: "Toko Maju".into(),
            push_name: "Maju".into(),
            first_name: "Budi".into(),
        };
        assert_eq!(sync_name(&c).as_deref(), Some("Toko Maju"));
        c.business_name.clear();
        assert_eq!(sync_name(&c).as_deref(), Some("Maju"));
        c.push_name.clear();
        c.first_name.clear();
        assert_eq!(sync_name(&c), None);
        assert_eq!(
            sync_key("6281234567890:12@s.whatsapp.net", "ID").map(|k| k.as_str().to_string()),
            Some("6281234567890".into())
        );
        assert_eq!(
            sync_key("120363025246125888@lid", "ID").map(|k| k.as_str().to_string()),
            Some("120363025246125888@lid".into())
        );
        assert_eq!(sync_key("120363025246125888@g.us", "ID"), None);
        assert_eq!(sync_key("status@broadcast", "ID"), None);
        assert_eq!(sync_key("12@s.whatsapp.net", "ID"), None);
    }
}
