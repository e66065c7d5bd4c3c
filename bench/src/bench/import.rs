//! Phase 6: CSV contact import, streamed (`POST /api/v1/contacts/import`, docs/contacts.md). No
//! target in docs/design.md: the numbers are reported for the record.
//!
//! Set-up, not timed: every other phone of the file already exists as a contact, created by an
//! import of just those rows through the same endpoint.
//! Timed: ONE POST of a generated CSV (body built beforehand) of `--import-rows` rows (phone,
//! name, tags, city) plus three bad rows (not a phone, a missing cell, an overlong tag), from
//! sending until the 200. Herald answers once every batch is committed AND the contacts read
//! model has caught up, so the wall time is end to end. Checked: the answer's counts (the new
//! half imported, the existing half matched, the bad rows rejected), the read model (every phone
//! of the file carries the bench tag), and the import's transactions in the event store (one per
//! batch, none touching more than 2,000 contacts).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use cqrs_es::Aggregate;
use herald_contacts::csv_file::BATCH_ROWS;
use herald_domain::contact::Contact;
use serde_json::Value;
use sqlx::PgPool;

use super::{phone, progress, Args, Report, Tenant, POLL};

const TAG: &str = "bench-import";
const BAD_ROWS: usize = 3;

/// POSTs a CSV; the status and the JSON answer.
async fn post_csv(t: &Tenant, body: Vec<u8>) -> anyhow::Result<(u16, Value)> {
    let mut request = t
        .client
        .http
        .post(format!("{}/api/v1/contacts/import", t.client.base))
        .header("content-type", "text/csv; charset=utf-8")
        .body(body);
    if let Some(token) = &t.client.token {
        request = request.bearer_auth(token);
    }
    let res = request.send().await?;
    let status = res.status().as_u16();
    let bytes = res.bytes().await?;
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    anyhow::ensure!(
        status == 200,
        "POST /api/v1/contacts/import answered {status}: {}",
        String::from_utf8_lossy(&bytes)
            .chars()
            .take(500)
            .collect::<String>()
    );
    Ok((status, value))
}

fn count(answer: &Value, field: &str) -> u64 {
    answer
        .get(field)
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX)
}

pub(super) async fn phase_import(
    args: &Args,
    pool: &PgPool,
    t: &Tenant,
    report: &mut Report,
) -> anyhow::Result<()> {
    let n = args.import_rows;
    if n == 0 {
        return Ok(());
    }
    let existing = n.div_ceil(2);
    let mut setup = String::from("phone,name\n");
    for i in (0..n).step_by(2) {
        let _ = writeln!(setup, "{},Existing {i}", phone(i));
    }
    progress(format!("import: set-up, {existing} existing contacts"));
    let (_, answer) = post_csv(t, setup.into_bytes()).await?;
    report.check(
        count(&answer, "imported") == existing as u64,
        format!("the set-up import created {answer}, not {existing} contacts"),
    );

    let mut csv = String::from("phone,name,tags,city\n");
    for i in 0..n {
        let _ = writeln!(csv, "{},Customer {i},{TAG},City {}", phone(i), i % 97);
    }
    csv.push_str("not a phone,Nobody,bench-import,Nowhere\n");
    csv.push_str("6281399999999,Missing a cell\n");
    let _ = writeln!(csv, "6281399999998,Long tag,{},Somewhere", "t".repeat(70));
    let bytes = csv.len();
    let before: i64 = sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM events")
        .fetch_one(pool)
        .await?;
    progress(format!(
        "import: POST of {} rows ({:.1} MiB)",
        n + BAD_ROWS,
        bytes as f64 / (1024.0 * 1024.0)
    ));
    let started = Instant::now();
    let (_, answer) = post_csv(t, csv.into_bytes()).await?;
    let took = started.elapsed();

    // The 200 says the read model has caught up; this confirms it from the outside.
    let timeout = Duration::from_secs(args.timeout_secs);
    let answered = Instant::now();
    let (caught_up, tagged) = loop {
        let tagged: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM contacts WHERE tenant_id = $1 AND $2 = ANY(tags)",
        )
        .bind(t.tenant_id)
        .bind(TAG)
        .fetch_one(pool)
        .await?;
        if tagged >= n as i64 || answered.elapsed() > timeout {
            break (answered.elapsed(), tagged);
        }
        tokio::time::sleep(POLL).await;
    };
    let (transactions, largest): (i64, Option<i64>) = sqlx::query_as(
        "SELECT count(*), max(contacts) FROM (
           SELECT count(DISTINCT aggregate_id) AS contacts FROM events
            WHERE aggregate_type = $1 AND global_position > $2 GROUP BY tx_id) t",
    )
    .bind(Contact::TYPE)
    .bind(before)
    .fetch_one(pool)
    .await?;

    report.section(&format!(
        "Import: one CSV of {n} rows + {BAD_ROWS} bad ({:.1} MiB), half of the phones existing contacts",
        bytes as f64 / (1024.0 * 1024.0)
    ));
    let rate = (n + BAD_ROWS) as f64 / took.as_secs_f64();
    report.row("rows imported", format!("{rate:.0} rows/s"), "", None);
    report.row(
        "  wall time: POST → 200 (batches committed, read model caught up)",
        format!("{:.2} s", took.as_secs_f64()),
        "",
        None,
    );
    report.row(
        "  contacts in the read model with the bench tag (counted after the 200)",
        format!("{tagged} in {:.0} ms", caught_up.as_secs_f64() * 1000.0),
        &format!("= {n}"),
        Some(tagged == n as i64),
    );
    report.row(
        "  imported / matched / rejected",
        format!(
            "{} / {} / {}",
            count(&answer, "imported"),
            count(&answer, "matched"),
            count(&answer, "rejected_count")
        ),
        &format!("= {} / {existing} / {BAD_ROWS}", n - existing),
        None,
    );
    report.row(
        "  transactions (contacts in the largest)",
        format!("{transactions} ({})", largest.unwrap_or(0)),
        &format!("≤ {BATCH_ROWS} each"),
        Some(largest.unwrap_or(0) <= BATCH_ROWS as i64),
    );
    report.check(
        count(&answer, "imported") == (n - existing) as u64
            && count(&answer, "matched") == existing as u64
            && count(&answer, "rejected_count") == BAD_ROWS as u64,
        format!("the import answered {answer}"),
    );
    report.check(
        tagged == n as i64,
        format!("{tagged} of {n} imported contacts show in the read model"),
    );
    report.check(
        largest.unwrap_or(0) <= BATCH_ROWS as i64,
        format!("an import transaction wrote {largest:?} contacts"),
    );
    Ok(())
}
