//! Reading a contacts CSV (what `POST /api/v1/contacts/import` receives) as a stream: rows are parsed as the
//! body arrives and handed out in batches of at most [`BATCH_ROWS`] rows (or [`BATCH_BYTES`] of
//! input), so memory is bounded by a batch, not by the file (docs/contacts.md, decision 0025).
//!
//! - A `phone` column is required (header matched case-insensitively, spaces and a BOM ignored).
//! - The delimiter is `,`, or `;` when the header line has a `;` and no `,` outside quotes (what a
//!   spreadsheet in a comma-decimal locale writes). Quoted cells may hold delimiters, quotes
//!   (`""`) and line breaks; lines end in LF or CRLF.
//! - `name` and `tags` columns are the contact's name and tags (`tags` split on `;` or `,`).
//! - Every other column is kept as a field, its header turned into a template variable name
//!   (`First Name` → `first_name`). Empty cells leave a field as it is.
//! - A row that cannot be a contact (bad phone, overlong value, bad tag, broken UTF-8, wrong
//!   column count) is listed in `rejected` with its line number (the header is row 1) and does
//!   not fail the import. Rows for the same phone within a batch merge into one upsert, later
//!   rows winning, which is what applying them one after the other would do.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};

use chrono::{DateTime, Utc};
use herald_domain::contact::{
    field_key_from_header, normalise_tags, validate_contact_name, validate_fields, ContactKey,
    ContactSource, Fields, TagMode, Upsert, MAX_FIELDS,
};
use herald_domain::phone::Phone;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::error::ContactsError;

/// Data rows per batch (one transaction each).
pub const BATCH_ROWS: usize = 2_000;
/// Input bytes per batch: a batch of wide rows is cut earlier.
pub const BATCH_BYTES: u64 = 4 * 1024 * 1024;
/// Longest row (a cell with an unclosed quote would otherwise swallow the rest of the file).
pub const MAX_ROW_BYTES: u64 = 1024 * 1024;
/// How much of a rejected row's input is echoed back.
const ECHO_CHARS: usize = 200;
/// How far the delimiter sniffer looks for the end of the header line.
const HEAD_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct RejectedRow {
    /// The row's line number in the file (where it starts); the header is row 1.
    pub row: u64,
    /// The row's phone cell (or the row, when it has none).
    pub input: String,
    pub reason: String,
}

/// One contact of a batch: the rows for its phone merged into one upsert.
#[derive(Debug)]
pub struct Pending {
    pub upsert: Upsert,
    /// Line of the first row for this phone in the batch.
    pub line: u64,
    /// The phone cell as written in that row.
    pub input: String,
    /// Rows merged into this upsert (1 when the phone appears once in the batch).
    pub rows: usize,
}

/// Rows read since the previous batch.
#[derive(Debug, Default)]
pub struct Batch {
    /// One per distinct phone, in the order first seen.
    pub contacts: Vec<Pending>,
    /// Rows refused while reading (bad phone, wrong cell count...), in file order.
    pub rejected: Vec<RejectedRow>,
    /// Data rows read (blank lines not counted).
    pub rows: usize,
    /// Line where the batch's last row starts.
    pub last_line: u64,
}

/// Why reading stopped before the end of the file. Everything before it was handed out.
#[derive(Debug, thiserror::Error)]
pub enum Stop {
    #[error("an import takes at most {0} rows")]
    TooManyRows(usize),
    #[error("an import is at most {0} bytes")]
    TooManyBytes(u64),
    #[error("the row at line {0} is longer than {MAX_ROW_BYTES} bytes (an unclosed quote?)")]
    RowTooLong(u64),
    #[error("the body could not be read: {0}")]
    BodyFailed(String),
    /// The upload sent nothing for the server's body idle timeout (`HERALD_BODY_IDLE_TIMEOUT_SECS`).
    #[error("the body stopped arriving")]
    BodyStalled,
    #[error("the CSV cannot be read past line {0}: {1}")]
    Unreadable(u64, String),
}

/// How reading ended.
#[derive(Debug)]
pub struct Outcome {
    /// Data rows handed out in batches.
    pub rows: usize,
    /// `None`: the whole file was read (or the receiver went away, see [`read_batches`]).
    pub stop: Option<Stop>,
}

enum Column {
    Phone,
    Name,
    Tags,
    Field(String),
}

impl Column {
    fn label(&self) -> &str {
        match self {
            Column::Phone => "phone",
            Column::Name => "name",
            Column::Tags => "tags",
            Column::Field(key) => key,
        }
    }
}

fn header_columns(headers: &csv::ByteRecord) -> Result<Vec<Column>, ContactsError> {
    let mut columns = Vec::with_capacity(headers.len());
    let mut seen: HashMap<String, String> = HashMap::new();
    for (i, raw) in headers.iter().enumerate() {
        let text = std::str::from_utf8(raw)
            .map_err(|_| ContactsError::invalid("csv", "the header row is not valid UTF-8"))?;
        if text.contains('\0') {
            return Err(ContactsError::InvalidText {
                field: format!("csv.header[{i}]"),
            });
        }
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
                    ContactsError::invalid(
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
            return Err(ContactsError::invalid(
                "csv",
                format!("columns {previous:?} and {text:?} both mean `{key}`"),
            ));
        }
        columns.push(column);
    }
    if !columns.iter().any(|c| matches!(c, Column::Phone)) {
        return Err(ContactsError::invalid(
            "phone",
            "the CSV has no `phone` column (the first row must be a header naming it)",
        ));
    }
    let fields = columns
        .iter()
        .filter(|c| matches!(c, Column::Field(_)))
        .count();
    if fields > MAX_FIELDS {
        return Err(ContactsError::invalid(
            "csv",
            format!("at most {MAX_FIELDS} field columns besides phone, name and tags"),
        ));
    }
    Ok(columns)
}

/// A row's input as echoed in the answer; a NUL shows as U+FFFD, so the echo itself is text
/// Postgres and every client can keep.
fn echo(text: &str) -> String {
    text.chars()
        .take(ECHO_CHARS)
        .map(|c| if c == '\0' { '\u{fffd}' } else { c })
        .collect()
}

/// A blocking reader over body chunks sent from the async side (run it on a blocking thread).
/// An `Err` chunk ends the stream with that error.
pub struct ChunkReader<B> {
    chunks: mpsc::Receiver<io::Result<B>>,
    current: Option<B>,
    offset: usize,
}

impl<B: AsRef<[u8]>> ChunkReader<B> {
    pub fn new(chunks: mpsc::Receiver<io::Result<B>>) -> Self {
        ChunkReader {
            chunks,
            current: None,
            offset: 0,
        }
    }
}

impl<B: AsRef<[u8]>> Read for ChunkReader<B> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(chunk) = &self.current {
                let rest = &chunk.as_ref()[self.offset..];
                if !rest.is_empty() {
                    let n = rest.len().min(buf.len());
                    buf[..n].copy_from_slice(&rest[..n]);
                    self.offset += n;
                    return Ok(n);
                }
            }
            match self.chunks.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.current = Some(chunk);
                    self.offset = 0;
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
    }
}

/// What the CSV reader reads: the sniffed head first, then the rest. It refuses to go on once one
/// row has taken more than [`MAX_ROW_BYTES`], and notes where line breaks are, so rows get the
/// line numbers an editor shows (the CSV reader's own count is off after a CRLF or a blank line).
struct Guarded<R> {
    head: Vec<u8>,
    head_read: usize,
    rest: R,
    /// Bytes handed to the CSV reader.
    delivered: u64,
    /// Where the row being read starts (the CSV reader's position after the previous one).
    row_start: u64,
    /// Its line, for the error when it is too long.
    row_line: u64,
    /// Offsets of the line breaks handed out but not yet behind a finished row.
    newlines: VecDeque<u64>,
    /// Line breaks behind finished rows.
    newlines_passed: u64,
}

impl<R> Guarded<R> {
    /// A row ended at byte `end`: how many line breaks came before `end`, and whether the row's
    /// terminator was one of them (`\n` as its last byte).
    fn row_ended(&mut self, end: u64) -> (u64, bool) {
        let mut last_was_newline = false;
        while let Some(&offset) = self.newlines.front() {
            if offset >= end {
                break;
            }
            self.newlines.pop_front();
            self.newlines_passed += 1;
            last_was_newline = offset + 1 == end;
        }
        (self.newlines_passed, last_was_newline)
    }

    /// The line where the next row starts (the previous one ended at `end`).
    fn next_line(&self, end: u64) -> u64 {
        let pending = self.newlines.front() == Some(&end);
        1 + self.newlines_passed + u64::from(pending)
    }
}

impl<R: Read> Read for Guarded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.delivered.saturating_sub(self.row_start) > MAX_ROW_BYTES {
            return Err(io::Error::other(Stop::RowTooLong(self.row_line)));
        }
        let n = if self.head_read < self.head.len() {
            let rest = &self.head[self.head_read..];
            let n = rest.len().min(buf.len());
            buf[..n].copy_from_slice(&rest[..n]);
            self.head_read += n;
            n
        } else {
            self.rest.read(buf)?
        };
        for (i, byte) in buf[..n].iter().enumerate() {
            if *byte == b'\n' {
                self.newlines.push_back(self.delivered + i as u64);
            }
        }
        self.delivered += n as u64;
        Ok(n)
    }
}

/// Where a row that ended at `end` starts, given what [`Guarded::row_ended`] says.
fn row_line(record: &csv::ByteRecord, newlines_before_end: u64, ended_with_newline: bool) -> u64 {
    let inside = record
        .iter()
        .map(|cell| cell.iter().filter(|b| **b == b'\n').count() as u64)
        .sum::<u64>();
    1 + newlines_before_end.saturating_sub(inside + u64::from(ended_with_newline))
}

/// The start of the input: up to the first line break (or [`HEAD_BYTES`], or the end).
fn read_head(input: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 8 * 1024];
    while !head.contains(&b'\n') && head.len() < HEAD_BYTES {
        let n = match input.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(head)
}

/// `;` when the header line has a `;` and no `,` outside quotes; `,` otherwise.
fn sniff_delimiter(head: &[u8]) -> u8 {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let (mut commas, mut semicolons, mut quoted) = (0, 0, false);
    for b in line {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => commas += 1,
            b';' if !quoted => semicolons += 1,
            _ => {}
        }
    }
    if semicolons > 0 && commas == 0 {
        b';'
    } else {
        b','
    }
}

/// What a failed read means: one of our own stops (carried in the I/O error), or unreadable CSV.
fn stop_of(e: csv::Error, line: u64) -> Stop {
    if !e.is_io_error() {
        return Stop::Unreadable(line, e.to_string());
    }
    match e.into_kind() {
        csv::ErrorKind::Io(io) => io_stop(io),
        _ => Stop::Unreadable(line, "unreadable".into()),
    }
}

/// Our own stop carried in an I/O error, or the body failing.
fn io_stop(e: io::Error) -> Stop {
    let text = e.to_string();
    match e.into_inner().map(|inner| inner.downcast::<Stop>()) {
        Some(Ok(stop)) => *stop,
        _ => Stop::BodyFailed(text),
    }
}

/// A header-time failure: nothing was read yet, so a plain 4xx.
fn header_error(stop: Stop) -> ContactsError {
    match stop {
        Stop::TooManyBytes(max) => {
            ContactsError::TooLarge(format!("an import is at most {max} bytes; split the file"))
        }
        Stop::BodyFailed(m) => ContactsError::BodyFailed(m),
        Stop::BodyStalled => ContactsError::BodyStalled,
        other => ContactsError::invalid("csv", format!("the header row cannot be read: {other}")),
    }
}

/// Reads a CSV from `input` and hands its rows to `emit` in batches, in file order. `emit`
/// returning `false` (the writer has gone) ends reading quietly. A bad header is an error before
/// any batch; a failure later ends reading with [`Outcome::stop`], after every complete row
/// before it was handed out. At most `max_rows` data rows are read.
pub fn read_batches(
    mut input: impl Read,
    tenant_id: Uuid,
    region: &str,
    at: DateTime<Utc>,
    max_rows: usize,
    mut emit: impl FnMut(Batch) -> bool,
) -> Result<Outcome, ContactsError> {
    let mut head = read_head(&mut input).map_err(|e| header_error(io_stop(e)))?;
    if head.starts_with(b"\xEF\xBB\xBF") {
        head.drain(..3);
    }
    let delimiter = sniff_delimiter(&head);
    let guarded = Guarded {
        head,
        head_read: 0,
        rest: input,
        delivered: 0,
        row_start: 0,
        row_line: 1,
        newlines: VecDeque::new(),
        newlines_passed: 0,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(guarded);
    let headers = reader
        .byte_headers()
        .map_err(|e| header_error(stop_of(e, 1)))?
        .clone();
    if headers.is_empty() || headers.iter().all(|h| h.is_empty()) {
        return Err(ContactsError::invalid(
            "phone",
            "the CSV is empty: it needs a header row with a `phone` column",
        ));
    }
    let columns = header_columns(&headers)?;
    let after_header = reader.position().byte();
    let guard = reader.get_mut();
    guard.row_ended(after_header);
    guard.row_start = after_header;
    guard.row_line = guard.next_line(after_header);
    let mut rows = 0usize;
    let mut batch = Batch::default();
    let mut batch_start = after_header;
    let mut by_key: HashMap<ContactKey, usize> = HashMap::new();
    let mut record = csv::ByteRecord::new();
    let mut stop = None;
    loop {
        let next_line = reader.get_ref().row_line;
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                stop = Some(stop_of(e, next_line));
                break;
            }
        }
        let end = reader.position().byte();
        let guard = reader.get_mut();
        let (newlines, ended_with_newline) = guard.row_ended(end);
        let line = row_line(&record, newlines, ended_with_newline);
        guard.row_start = end;
        guard.row_line = guard.next_line(end);
        if record
            .iter()
            .all(|cell| cell.iter().all(u8::is_ascii_whitespace))
        {
            continue; // blank line
        }
        if rows == max_rows {
            stop = Some(Stop::TooManyRows(max_rows));
            break;
        }
        rows += 1;
        batch.rows += 1;
        batch.last_line = line;
        match read_row(&record, &columns, tenant_id, region, at) {
            Ok(upsert) => match by_key.get(&upsert.key) {
                Some(&i) => {
                    let pending = &mut batch.contacts[i];
                    match merge(&mut pending.upsert, upsert) {
                        Ok(()) => pending.rows += 1,
                        Err(reason) => batch.rejected.push(RejectedRow {
                            row: line,
                            input: pending.input.clone(),
                            reason,
                        }),
                    }
                }
                None => {
                    by_key.insert(upsert.key.clone(), batch.contacts.len());
                    let input = record_phone(&record, &columns);
                    batch.contacts.push(Pending {
                        upsert,
                        line,
                        input,
                        rows: 1,
                    });
                }
            },
            Err((input, reason)) => batch.rejected.push(RejectedRow {
                row: line,
                input: echo(&input),
                reason,
            }),
        }
        if batch.rows >= BATCH_ROWS || end - batch_start >= BATCH_BYTES {
            by_key.clear();
            batch_start = end;
            if !emit(std::mem::take(&mut batch)) {
                return Ok(Outcome { rows, stop: None });
            }
        }
    }
    if batch.rows > 0 && !emit(batch) {
        return Ok(Outcome { rows, stop: None });
    }
    Ok(Outcome { rows, stop })
}

/// The phone cell of a row that parsed (echoed when the database refuses the contact).
fn record_phone(record: &csv::ByteRecord, columns: &[Column]) -> String {
    columns
        .iter()
        .position(|c| matches!(c, Column::Phone))
        .and_then(|i| record.get(i))
        .map(|cell| echo(String::from_utf8_lossy(cell).trim()))
        .unwrap_or_default()
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
    for (i, cell) in record.iter().enumerate() {
        match std::str::from_utf8(cell) {
            // the import's form of 422 `invalid_text` (docs/decisions/0037): this row only
            Ok(text) if text.contains('\0') => {
                return Err((
                    whole(),
                    format!(
                    "column {} ({}) contains U+0000 (NUL), which Herald does not accept in text",
                    i + 1,
                    columns[i].label()
                ),
                ))
            }
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
    let phone = Phone::parse(phone_text, region).map_err(|e| (input(), e.reason()))?;
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

/// A later row for the same phone: its name wins, its tags add, its fields overwrite. A row
/// that would take the contact past a limit changes nothing and is refused.
fn merge(into: &mut Upsert, later: Upsert) -> Result<(), String> {
    let tags = match later.tags {
        Some(tags) => {
            let all: Vec<String> = into
                .tags
                .clone()
                .unwrap_or_default()
                .into_iter()
                .chain(tags)
                .collect();
            Some(normalise_tags(&all).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    if later.name.is_some() {
        into.name = later.name;
    }
    if tags.is_some() {
        into.tags = tags;
    }
    if let Some(fields) = later.fields {
        into.fields.get_or_insert_with(Fields::new).extend(fields);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
