//! Reading a contacts CSV (`POST /api/v1/contacts/import`) into upserts, row by row.
//!
//! - A `phone` column is required (header matched case-insensitively, spaces and a BOM ignored).
//! - `name` and `tags` columns are the contact's name and tags (`tags` split on `;` or `,`).
//! - Every other column is kept as a field, its header turned into a template variable name
//!   (`First Name` → `first_name`). Empty cells leave a field as it is.
//! - A row that cannot be a contact (bad phone, overlong value, bad tag, broken UTF-8, wrong
//!   column count) is listed in `rejected` with its row number (the header is row 1) and does not
//!   fail the import. Rows for the same phone merge into one contact, later rows winning.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use herald_domain::contact::{
    field_key_from_header, normalise_tags, validate_contact_name, validate_fields, ContactKey,
    ContactSource, Fields, TagMode, Upsert, MAX_FIELDS,
};
use herald_domain::phone::Phone;
use salvo::oapi::ToSchema;
use serde::Serialize;
use uuid::Uuid;

use crate::error::ApiError;
use crate::intake::phone_reason;

/// Most data rows in one import; more is 413 (split the file).
pub const MAX_ROWS: usize = 100_000;
/// Rejected rows listed in the answer (all are counted).
const MAX_REJECTED_LISTED: usize = 1_000;
/// How much of a rejected row's input is echoed back.
const ECHO_CHARS: usize = 200;

#[derive(Debug, Serialize, ToSchema, PartialEq)]
pub struct RejectedRow {
    /// The row's number in the file; the header is row 1.
    pub row: u64,
    /// The row's phone cell (or the row, when it has none).
    pub input: String,
    pub reason: String,
}

/// A parsed file: one upsert per distinct contact, plus what was refused.
#[derive(Debug)]
pub struct Parsed {
    pub upserts: Vec<Upsert>,
    /// Rows that merged into an earlier row of the same file (same phone).
    pub duplicates: usize,
    pub rejected: Vec<RejectedRow>,
    pub rejected_count: usize,
    pub rows: usize,
}

enum Column {
    Phone,
    Name,
    Tags,
    Field(String),
}

fn header_columns(headers: &csv::ByteRecord) -> Result<Vec<Column>, ApiError> {
    let mut columns = Vec::with_capacity(headers.len());
    let mut seen: HashMap<String, String> = HashMap::new();
    for (i, raw) in headers.iter().enumerate() {
        let text = std::str::from_utf8(raw)
            .map_err(|_| ApiError::validation("csv", "the header row is not valid UTF-8"))?;
        let text = if i == 0 {
            text.trim_start_matches('\u{feff}')
        } else {
            text
        };
        let label = text.trim().to_lowercase();
        let column = match label.as_str() {
            "phone" => Column::Phone,
            "name" => Column::Name,
            "tags" => Column::Tags,
            _ => {
                let key = field_key_from_header(text).ok_or_else(|| {
                    ApiError::validation(
                        "csv",
                        format!(
                            "column {} has a header ({text:?}) that cannot name a field",
                            i + 1
                        ),
                    )
                })?;
                Column::Field(key)
            }
        };
        let key = match &column {
            Column::Phone => "phone".to_string(),
            Column::Name => "name".to_string(),
            Column::Tags => "tags".to_string(),
            Column::Field(k) => k.clone(),
        };
        if let Some(previous) = seen.insert(key.clone(), text.to_string()) {
            return Err(ApiError::validation(
                "csv",
                format!("columns {previous:?} and {text:?} both mean `{key}`"),
            ));
        }
        columns.push(column);
    }
    if !columns.iter().any(|c| matches!(c, Column::Phone)) {
        return Err(ApiError::validation(
            "phone",
            "the CSV has no `phone` column (the first row must be a header naming it)",
        ));
    }
    let fields = columns
        .iter()
        .filter(|c| matches!(c, Column::Field(_)))
        .count();
    if fields > MAX_FIELDS {
        return Err(ApiError::validation(
            "csv",
            format!("at most {MAX_FIELDS} field columns besides phone, name and tags"),
        ));
    }
    Ok(columns)
}

fn echo(text: &str) -> String {
    text.chars().take(ECHO_CHARS).collect()
}

/// Reads `body` (a whole CSV, already size-capped) into upserts for `tenant_id`.
pub fn parse(
    body: &[u8],
    tenant_id: Uuid,
    region: &str,
    at: DateTime<Utc>,
) -> Result<Parsed, ApiError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(body);
    let headers = reader
        .byte_headers()
        .map_err(|e| ApiError::validation("csv", format!("the header row cannot be read: {e}")))?
        .clone();
    if headers.is_empty() || headers.iter().all(|h| h.is_empty()) {
        return Err(ApiError::validation(
            "phone",
            "the CSV is empty: it needs a header row with a `phone` column",
        ));
    }
    let columns = header_columns(&headers)?;
    let mut out = Parsed {
        upserts: Vec::new(),
        duplicates: 0,
        rejected: Vec::new(),
        rejected_count: 0,
        rows: 0,
    };
    let mut by_key: HashMap<ContactKey, usize> = HashMap::new();
    let mut record = csv::ByteRecord::new();
    loop {
        let more = match reader.read_byte_record(&mut record) {
            Ok(more) => more,
            Err(e) => {
                return Err(ApiError::validation(
                    "csv",
                    format!("the CSV cannot be read past row {}: {e}", out.rows + 1),
                ))
            }
        };
        if !more {
            break;
        }
        if record
            .iter()
            .all(|cell| cell.iter().all(u8::is_ascii_whitespace))
        {
            continue; // blank line
        }
        out.rows += 1;
        if out.rows > MAX_ROWS {
            return Err(ApiError::PayloadTooLarge(format!(
                "an import takes at most {MAX_ROWS} rows; split the file"
            )));
        }
        let row_number = record.position().map_or(out.rows as u64 + 1, |p| p.line());
        match read_row(&record, &columns, tenant_id, region, at) {
            Ok(upsert) => match by_key.get(&upsert.key) {
                Some(&i) => {
                    merge(&mut out.upserts[i], upsert).map_err(|reason| {
                        ApiError::validation("csv", format!("row {row_number}: {reason}"))
                    })?;
                    out.duplicates += 1;
                }
                None => {
                    by_key.insert(upsert.key.clone(), out.upserts.len());
                    out.upserts.push(upsert);
                }
            },
            Err((input, reason)) => {
                out.rejected_count += 1;
                if out.rejected.len() < MAX_REJECTED_LISTED {
                    out.rejected.push(RejectedRow {
                        row: row_number,
                        input: echo(&input),
                        reason,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// One row as an upsert, or `(input, reason)`.
fn read_row(
    record: &csv::ByteRecord,
    columns: &[Column],
    tenant_id: Uuid,
    region: &str,
    at: DateTime<Utc>,
) -> Result<Upsert, (String, String)> {
    let whole = || {
        let cells: Vec<String> = record
            .iter()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        echo(&cells.join(","))
    };
    if record.len() != columns.len() {
        return Err((
            whole(),
            format!(
                "has {} cells where the header has {}",
                record.len(),
                columns.len()
            ),
        ));
    }
    let mut cells = Vec::with_capacity(record.len());
    for cell in record.iter() {
        match std::str::from_utf8(cell) {
            Ok(text) => cells.push(text.trim()),
            Err(_) => return Err((whole(), "is not valid UTF-8".into())),
        }
    }
    let mut phone = None;
    let mut name = None;
    let mut tags = None;
    let mut fields = Fields::new();
    for (column, cell) in columns.iter().zip(&cells) {
        match column {
            Column::Phone => phone = Some(*cell),
            Column::Name if !cell.is_empty() => name = Some(cell.to_string()),
            Column::Tags if !cell.is_empty() => {
                let list: Vec<String> = cell
                    .split([';', ','])
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(String::from)
                    .collect();
                tags = Some(list);
            }
            Column::Field(key) if !cell.is_empty() => {
                fields.insert(key.clone(), serde_json::Value::String(cell.to_string()));
            }
            _ => {}
        }
    }
    let phone_text = phone.unwrap_or_default();
    let input = || echo(phone_text);
    let phone = Phone::parse(phone_text, region).map_err(|e| (input(), phone_reason(&e)))?;
    if let Some(n) = &name {
        validate_contact_name(n).map_err(|e| (input(), e.to_string()))?;
    }
    let tags = tags
        .map(|t| normalise_tags(&t))
        .transpose()
        .map_err(|e| (input(), e.to_string()))?;
    validate_fields(&fields).map_err(|e| (input(), e.to_string()))?;
    Ok(Upsert {
        tenant_id,
        key: ContactKey::Phone(phone),
        name,
        tags,
        tag_mode: TagMode::Add,
        fields: (!fields.is_empty()).then_some(fields),
        source: ContactSource::Import,
        at,
    })
}

/// A later row for the same phone: its name wins, its tags add, its fields overwrite.
fn merge(into: &mut Upsert, later: Upsert) -> Result<(), String> {
    if later.name.is_some() {
        into.name = later.name;
    }
    if let Some(tags) = later.tags {
        let all: Vec<String> = into
            .tags
            .take()
            .unwrap_or_default()
            .into_iter()
            .chain(tags)
            .collect();
        into.tags = Some(normalise_tags(&all).map_err(|e| e.to_string())?);
    }
    if let Some(fields) = later.fields {
        into.fields.get_or_insert_with(Fields::new).extend(fields);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Parsed, ApiError> {
        parse(text.as_bytes(), Uuid::nil(), "ID", Utc::now())
    }

    #[test]
    fn columns_become_name_tags_and_fields_and_bad_rows_are_listed() {
        let parsed = parse_text(
            "\u{feff}Phone,Name,Tags,City,First Name\n\
             0812-3456-7890,Sari,vip;Lead,Bandung,Sari\n\
             not a phone,Budi,,,\n\
             +62 812 3456 7890,,b2b,,\n\
             6285700001111,Ani\n",
        )
        .expect("parses");
        assert_eq!(parsed.rows, 4);
        assert_eq!(parsed.upserts.len(), 1);
        assert_eq!(parsed.duplicates, 1);
        let sari = &parsed.upserts[0];
        assert_eq!(sari.key.as_str(), "6281234567890");
        assert_eq!(sari.name.as_deref(), Some("Sari"));
        assert_eq!(
            sari.tags,
            Some(vec!["b2b".to_string(), "lead".into(), "vip".into()])
        );
        let fields = sari.fields.clone().unwrap_or_default();
        assert_eq!(fields["city"], "Bandung");
        assert_eq!(fields["first_name"], "Sari");
        assert_eq!(parsed.rejected_count, 2);
        assert_eq!(parsed.rejected[0].row, 3);
        assert_eq!(parsed.rejected[0].input, "not a phone");
        assert_eq!(parsed.rejected[1].row, 5);
    }

    #[test]
    fn a_file_without_a_phone_column_names_it() {
        for text in ["name,city\nSari,Bandung\n", ""] {
            match parse_text(text) {
                Err(ApiError::Validation { field, .. }) => assert_eq!(field, "phone"),
                other => panic!("expected a 422 naming phone, got {other:?}"),
            }
        }
        assert!(matches!(
            parse_text("phone,City,city\n1,2,3\n"),
            Err(ApiError::Validation { .. })
        ));
    }
}
