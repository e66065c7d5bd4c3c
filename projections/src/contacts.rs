//! Read model of contacts: the `contacts` table and its tenant-scoped queries.
//!
//! Events are applied in batches (an import of 10,000 rows is 10,000+ events): the touched rows
//! are loaded in one query, the events folded in memory, then one delete and one multi-row upsert.
//!
//! List order, stable and keyset-paginated: favourites first, named contacts before unnamed ones,
//! then by lowercased name, then by key (phone digits or lid). The cursor is the last item's
//! `(rank, sort_name, key)`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use herald_domain::contact::{Contact, ContactEvent};
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::runtime::{Projector, StoredEvent};
use crate::Page;

pub struct ContactsProjector;

pub const NAME: &str = "contacts";

#[async_trait::async_trait]
impl Projector for ContactsProjector {
    fn name(&self) -> &'static str {
        NAME
    }
    fn tables(&self) -> &'static [&'static str] {
        &["contacts"]
    }
    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&[Contact::TYPE])
    }
    async fn apply(&self, conn: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()> {
        let mut parsed = Vec::new();
        for e in events.iter().filter(|e| e.aggregate_type == Contact::TYPE) {
            let (tenant, key) = e
                .aggregate_id
                .split_once(':')
                .ok_or_else(|| anyhow::anyhow!("bad contact id {}", e.aggregate_id))?;
            let tenant: Uuid = tenant.parse()?;
            parsed.push(((tenant, key.to_string()), e.parse::<ContactEvent>()?));
        }
        if parsed.is_empty() {
            return Ok(());
        }
        let mut keys: Vec<(Uuid, String)> = parsed.iter().map(|(k, _)| k.clone()).collect();
        keys.sort();
        keys.dedup();
        let mut rows = load(conn, &keys).await?;
        for (key, event) in parsed {
            fold(&mut rows, key, event);
        }
        write(conn, rows).await
    }
}

/// A contact row while a batch is folded; `None` in the map: deleted.
#[derive(Debug, Clone)]
struct Folded {
    name: Option<String>,
    tags: Vec<String>,
    favorite: bool,
    fields: serde_json::Value,
    source: String,
    /// When and how it opted out (docs/safe-sending.md).
    opted_out: Option<(DateTime<Utc>, String)>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

type Rows = HashMap<(Uuid, String), Option<Folded>>;

async fn load(conn: &mut PgConnection, keys: &[(Uuid, String)]) -> anyhow::Result<Rows> {
    let (tenants, ks): (Vec<Uuid>, Vec<String>) = keys.iter().cloned().unzip();
    let loaded = sqlx::query(
        "SELECT c.tenant_id, c.key::text AS key, c.name, c.tags, c.favorite, c.fields, c.source,
                c.opted_out_at, c.opt_out_source, c.created_at, c.updated_at
           FROM contacts c JOIN UNNEST($1::uuid[], $2::text[]) AS k(t, k)
             ON c.tenant_id = k.t AND c.key = k.k",
    )
    .bind(&tenants)
    .bind(&ks)
    .fetch_all(&mut *conn)
    .await?;
    let mut rows = Rows::with_capacity(keys.len());
    for r in loaded {
        let opted_out_at: Option<DateTime<Utc>> = r.try_get("opted_out_at")?;
        let opt_out_source: Option<String> = r.try_get("opt_out_source")?;
        rows.insert(
            (r.try_get("tenant_id")?, r.try_get("key")?),
            Some(Folded {
                name: r.try_get("name")?,
                tags: r.try_get("tags")?,
                favorite: r.try_get("favorite")?,
                fields: r.try_get("fields")?,
                source: r.try_get("source")?,
                opted_out: opted_out_at.zip(opt_out_source),
                created_at: r.try_get("created_at")?,
                updated_at: r.try_get("updated_at")?,
            }),
        );
    }
    Ok(rows)
}

fn fold(rows: &mut Rows, key: (Uuid, String), event: ContactEvent) {
    if let ContactEvent::ContactCreated {
        name,
        tags,
        fields,
        source,
        at,
        ..
    } = event
    {
        let row = Folded {
            name,
            tags,
            favorite: false,
            fields: serde_json::Value::Object(fields),
            source: source.as_str().to_string(),
            opted_out: None,
            created_at: at,
            updated_at: at,
        };
        rows.insert(key, Some(row));
        return;
    }
    let entry = rows.entry(key).or_insert(None);
    if let ContactEvent::ContactDeleted { .. } = event {
        *entry = None;
        return;
    }
    let Some(row) = entry.as_mut() else {
        return;
    };
    match event {
        ContactEvent::ContactRenamed { name, at, .. } => {
            row.name = name;
            row.updated_at = at;
        }
        ContactEvent::ContactTagged { tags, at } => {
            row.tags = tags;
            row.updated_at = at;
        }
        ContactEvent::ContactFieldsChanged { fields, at } => {
            row.fields = serde_json::Value::Object(fields);
            row.updated_at = at;
        }
        ContactEvent::ContactFavorited { favorite, at } => {
            row.favorite = favorite;
            row.updated_at = at;
        }
        ContactEvent::ContactOptedOut { source, at } => {
            row.opted_out = Some((at, source.as_str().to_string()));
            row.updated_at = row.updated_at.max(at);
        }
        ContactEvent::ContactOptedIn { at, .. } => {
            row.opted_out = None;
            row.updated_at = at;
        }
        ContactEvent::ContactCreated { .. } | ContactEvent::ContactDeleted { .. } => {}
    }
}

/// Favourites first, named before unnamed.
fn rank(favorite: bool, name: Option<&str>) -> i16 {
    (if favorite { 0 } else { 2 }) + i16::from(name.is_none())
}

fn sort_name(name: Option<&str>) -> String {
    name.map(str::to_lowercase).unwrap_or_default()
}

/// Rows per upsert statement.
const CHUNK: usize = 5_000;

async fn write(conn: &mut PgConnection, rows: Rows) -> anyhow::Result<()> {
    let mut gone_t = Vec::new();
    let mut gone_k = Vec::new();
    let mut live: Vec<((Uuid, String), Folded)> = Vec::with_capacity(rows.len());
    for (key, row) in rows {
        match row {
            Some(row) => live.push((key, row)),
            None => {
                gone_t.push(key.0);
                gone_k.push(key.1);
            }
        }
    }
    if !gone_t.is_empty() {
        sqlx::query(
            "DELETE FROM contacts c USING UNNEST($1::uuid[], $2::text[]) AS k(t, k)
              WHERE c.tenant_id = k.t AND c.key = k.k",
        )
        .bind(&gone_t)
        .bind(&gone_k)
        .execute(&mut *conn)
        .await?;
    }
    // one global order, so two batches never wait on each other in a cycle
    live.sort_by(|a, b| a.0.cmp(&b.0));
    for chunk in live.chunks(CHUNK) {
        let n = chunk.len();
        let (mut t, mut k, mut phone, mut lid, mut name) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut tags, mut fav, mut fields, mut source) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut ranks, mut sort, mut created, mut updated) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut out_at, mut out_source) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for ((tenant, key), row) in chunk {
            let is_lid = key.ends_with("@lid");
            t.push(*tenant);
            k.push(key.as_str());
            phone.push((!is_lid).then_some(key.as_str()));
            lid.push(is_lid.then_some(key.as_str()));
            name.push(row.name.as_deref());
            tags.push(serde_json::to_string(&row.tags)?);
            fav.push(row.favorite);
            fields.push(row.fields.to_string());
            source.push(row.source.as_str());
            ranks.push(rank(row.favorite, row.name.as_deref()));
            sort.push(sort_name(row.name.as_deref()));
            created.push(row.created_at);
            updated.push(row.updated_at);
            out_at.push(row.opted_out.as_ref().map(|(at, _)| *at));
            out_source.push(row.opted_out.as_ref().map(|(_, s)| s.as_str()));
        }
        sqlx::query(
            "INSERT INTO contacts (tenant_id, key, phone, lid, name, tags, favorite, fields, source,
                                   rank, sort_name, created_at, updated_at, opted_out_at,
                                   opt_out_source)
             SELECT t, k, p, l, n, ARRAY(SELECT jsonb_array_elements_text(g::jsonb)), f, d::jsonb, s,
                    r, o, c, u, oa, os
               FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                           $7::bool[], $8::text[], $9::text[], $10::int2[], $11::text[],
                           $12::timestamptz[], $13::timestamptz[], $14::timestamptz[], $15::text[])
                 AS x(t, k, p, l, n, g, f, d, s, r, o, c, u, oa, os)
             ON CONFLICT (tenant_id, key) DO UPDATE SET
                name = EXCLUDED.name, tags = EXCLUDED.tags, favorite = EXCLUDED.favorite,
                fields = EXCLUDED.fields, source = EXCLUDED.source, rank = EXCLUDED.rank,
                sort_name = EXCLUDED.sort_name, created_at = EXCLUDED.created_at,
                updated_at = EXCLUDED.updated_at, opted_out_at = EXCLUDED.opted_out_at,
                opt_out_source = EXCLUDED.opt_out_source",
        )
        .bind(&t)
        .bind(&k)
        .bind(&phone)
        .bind(&lid)
        .bind(&name)
        .bind(&tags)
        .bind(&fav)
        .bind(&fields)
        .bind(&source)
        .bind(&ranks)
        .bind(&sort)
        .bind(&created)
        .bind(&updated)
        .bind(&out_at)
        .bind(&out_source)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ContactRow {
    pub tenant_id: Uuid,
    pub key: String,
    pub phone: Option<String>,
    pub lid: Option<String>,
    pub name: Option<String>,
    pub tags: Vec<String>,
    pub favorite: bool,
    pub fields: serde_json::Value,
    pub source: String,
    pub rank: i16,
    pub sort_name: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub opted_out_at: Option<DateTime<Utc>>,
    /// `keyword`, `cloud_api`, `manual` or `import`, with `opted_out_at`.
    pub opt_out_source: Option<String>,
}

const COLUMNS: &str =
    "tenant_id, key::text AS key, phone, lid, name, tags, favorite, fields, source,
                       rank, sort_name::text AS sort_name, created_at, updated_at, opted_out_at,
                       opt_out_source";

pub async fn get(pool: &PgPool, tenant_id: Uuid, key: &str) -> sqlx::Result<Option<ContactRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM contacts WHERE tenant_id = $1 AND key = $2"
    ))
    .bind(tenant_id)
    .bind(key)
    .fetch_optional(pool)
    .await
}

/// `GET /contacts` filters; `None` is no filter.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// A normalised tag.
    pub tag: Option<String>,
    /// Part of the name (any case) or of the key.
    pub q: Option<String>,
    pub favorite: Option<bool>,
    /// `Some(true)`: only opted-out contacts; `Some(false)`: only those who did not opt out.
    pub opted_out: Option<bool>,
}

/// The position of a row in the list order, as an opaque cursor: `<rank>.<hex sort_name>.<key>`.
pub fn cursor_of(row: &ContactRow) -> String {
    let hex: String = row.sort_name.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{}.{hex}.{}", row.rank, row.key)
}

/// Parses [`cursor_of`]; `None` for anything else.
pub fn parse_cursor(cursor: &str) -> Option<(i16, String, String)> {
    let (rank, rest) = cursor.split_once('.')?;
    let (hex, key) = rest.split_once('.')?;
    // PostgreSQL's text cannot hold NUL: such a cursor was never given out
    if hex.len() % 2 != 0 || key.is_empty() || key.contains('\0') {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    let sort_name = String::from_utf8(bytes)
        .ok()
        .filter(|n| !n.contains('\0'))?;
    Some((rank.parse().ok()?, sort_name, key.to_string()))
}

/// `%`, `_` and `\` taken literally in a LIKE pattern.
fn like_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub async fn list(
    pool: &PgPool,
    tenant_id: Uuid,
    filter: &Filter,
    limit: i64,
    after: Option<(i16, String, String)>,
) -> sqlx::Result<Page<ContactRow>> {
    let (rank, sort, key) = match after {
        Some((r, s, k)) => (Some(r), Some(s), Some(k)),
        None => (None, None, None),
    };
    let pattern = filter
        .q
        .as_deref()
        .map(|q| format!("%{}%", like_literal(q)));
    let rows: Vec<ContactRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM contacts
          WHERE tenant_id = $1
            AND ($2::text IS NULL OR tags @> ARRAY[$2::text])
            AND ($3::text IS NULL OR name ILIKE $3 OR key LIKE $3)
            AND ($4::bool IS NULL OR favorite = $4)
            AND ($5::int2 IS NULL OR (rank, sort_name, key) > ($5, $6::text COLLATE \"C\", $7::text COLLATE \"C\"))
            AND ($9::bool IS NULL OR (opted_out_at IS NOT NULL) = $9)
          ORDER BY rank, sort_name, key LIMIT $8"
    ))
    .bind(tenant_id)
    .bind(filter.tag.as_deref())
    .bind(pattern)
    .bind(filter.favorite)
    .bind(rank)
    .bind(sort)
    .bind(key)
    .bind(limit + 1)
    .bind(filter.opted_out)
    .fetch_all(pool)
    .await?;
    Ok(Page::from_rows(rows, limit, cursor_of))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let row = ContactRow {
            tenant_id: Uuid::nil(),
            key: "6281234567890".into(),
            phone: Some("6281234567890".into()),
            lid: None,
            name: Some("Sári. O'Neil".into()),
            tags: vec![],
            favorite: true,
            fields: serde_json::json!({}),
            source: "api".into(),
            rank: 0,
            sort_name: "sári. o'neil".into(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
            opted_out_at: None,
            opt_out_source: None,
        };
        let cursor = cursor_of(&row);
        assert_eq!(
            parse_cursor(&cursor),
            Some((0, "sári. o'neil".into(), "6281234567890".into()))
        );
        assert_eq!(parse_cursor("nonsense"), None);
        assert_eq!(parse_cursor("0.zz.628"), None);
        assert_eq!(parse_cursor("0.616.628"), None);
        // NUL in the name or the key: never given out, and PostgreSQL cannot bind it
        assert_eq!(parse_cursor("0.6100.628"), None);
        assert_eq!(parse_cursor("0.61.62\08"), None);
        assert_eq!(parse_cursor("99999.61.628"), None);
    }

    #[test]
    fn favourites_come_first_and_named_before_unnamed() {
        assert!(rank(true, Some("a")) < rank(true, None));
        assert!(rank(true, None) < rank(false, Some("a")));
        assert!(rank(false, Some("a")) < rank(false, None));
        assert_eq!(like_literal("50%_a\\"), "50\\%\\_a\\\\");
    }
}
