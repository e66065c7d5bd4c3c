//! CSV import, streamed: merging by normalised phone with `matched` counts, rejected rows (a
//! capped list), bad files as 4xx, CSV dialects, duplicates across batches, limits and failures
//! part-way (what was applied, and that re-running the file is safe), a 50,000-row file in
//! bounded batches, and tenant isolation.

use std::time::{Duration, Instant};

use crate::helpers::{error_code, spawn_app, spawn_app_configured, TestApp};
use cqrs_es::Aggregate;
use herald_contacts::csv_file::BATCH_ROWS;
use herald_domain::contact::Contact;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub(crate) async fn import(app: &TestApp, token: &str, csv: String) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/contacts/import"))
        .bearer_auth(token)
        .header("content-type", "text/csv; charset=utf-8")
        .body(csv)
        .send()
        .await
        .expect("request sent")
}

#[tokio::test]
async fn an_import_merges_by_phone_counts_matches_and_lists_rejected_rows() {
    let app = spawn_app().await;
    let a = app.register("crm@c.co").await;
    // an existing contact, synced or typed in earlier
    let res = app
        .post(
            "/api/v1/contacts",
            &a.token,
            &json!({"phone": "6281234567890", "name": "Sari", "tags": ["vip"], "fields": {"tier": "gold"}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);

    let csv = "PHONE,Name,Tags,City,Company Name\n\
               0812-3456-7890,,lead,Bandung,\n\
               +62 857 1234 5678,Budi,vip;b2b,Jakarta,Toko Maju\n\
               12345,Nobody,,,\n\
               6285712345678,,,Depok,\n\
               ,Empty phone,,,\n\
               6281398765432,Rina\n";
    let res = import(&app, &a.token, csv.to_string()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["imported"], 1, "{body}");
    // row 2 hit Sari; row 5 hit the contact row 3 created
    assert_eq!(body["matched"], 2, "{body}");
    assert_eq!(body["rejected_count"], 3, "{body}");
    assert_eq!(body["rejected_omitted"], 0, "{body}");
    let rejected = body["rejected"].as_array().expect("rejected");
    assert_eq!(rejected[0]["row"], 4);
    assert_eq!(rejected[0]["input"], "12345");
    assert_eq!(rejected[0]["reason"], "not a valid phone number");
    assert_eq!(rejected[1]["row"], 6);
    assert_eq!(rejected[1]["reason"], "phone number is empty");
    assert_eq!(rejected[2]["row"], 7);
    assert!(
        rejected[2]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("cells"),
        "{body}"
    );

    let sari = app
        .get_json("/api/v1/contacts/6281234567890", &a.token)
        .await;
    assert_eq!(sari["name"], "Sari", "an empty name cell keeps the name");
    assert_eq!(sari["tags"], json!(["lead", "vip"]), "an import adds tags");
    assert_eq!(sari["fields"], json!({"city": "Bandung", "tier": "gold"}));
    let budi = app
        .get_json("/api/v1/contacts/6285712345678", &a.token)
        .await;
    assert_eq!(budi["name"], "Budi");
    assert_eq!(budi["source"], "import");
    assert_eq!(budi["tags"], json!(["b2b", "vip"]));
    assert_eq!(
        budi["fields"],
        json!({"city": "Depok", "company_name": "Toko Maju"})
    );

    // the same file again: everything matches, nothing new
    let again: Value = import(&app, &a.token, csv.to_string())
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(again["imported"], 0, "{again}");
    assert_eq!(again["matched"], 3, "{again}");

    // another tenant importing the same phones gets its own contacts, and never sees A's
    let b = app.register("other@c.co").await;
    let theirs: Value = import(&app, &b.token, "phone\n6281234567890\n".into())
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(theirs["imported"], 1);
    assert_eq!(theirs["matched"], 0);
    let listed = app.get_json("/api/v1/contacts", &b.token).await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(listed["items"][0]["name"], Value::Null);
    app.stop().await;
}

#[tokio::test]
async fn bad_files_are_clear_4xx_answers() {
    let app = spawn_app().await;
    let a = app.register("bad@c.co").await;
    let (_, body) = error_code(
        import(&app, &a.token, "name,city\nSari,Bandung\n".into()).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(body["error"]["details"]["field"], "phone");
    error_code(
        import(&app, &a.token, String::new()).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    error_code(
        import(&app, &a.token, "phone,City,city\n1,2,3\n".into()).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    // not CSV at all
    let res = app
        .post("/api/v1/contacts/import", &a.token, &json!({"phone": "1"}))
        .await;
    let (code, _) = error_code(res, StatusCode::BAD_REQUEST).await;
    assert_eq!(code, "unsupported_media_type");
    // nothing was written by any of them
    let listed = app.get_json("/api/v1/contacts", &a.token).await;
    assert_eq!(listed["items"], json!([]));
    app.stop().await;
}

async fn contacts_of(app: &TestApp, tenant_id: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM contacts WHERE tenant_id = $1::uuid")
        .bind(tenant_id)
        .fetch_one(&app.pool)
        .await
        .expect("count")
}

/// Rows `from..to` of a generated file: `62<prefix><8 digits>,<notes>` (one line each).
fn rows(prefix: &str, from: usize, to: usize, notes: &str) -> String {
    (from..to)
        .map(|i| format!("62{prefix}{i:08},{notes}\n"))
        .collect()
}

/// A chunked upload over a raw connection: reqwest sends a Content-Length for a body it holds,
/// and cannot stop half-way.
pub(crate) async fn chunked_import(app: &TestApp, token: &str) -> tokio::net::TcpStream {
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /api/v1/contacts/import HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: text/csv\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    stream
}

pub(crate) async fn send_chunk(
    stream: &mut tokio::net::TcpStream,
    data: &[u8],
) -> std::io::Result<()> {
    stream
        .write_all(format!("{:x}\r\n", data.len()).as_bytes())
        .await?;
    stream.write_all(data).await?;
    stream.write_all(b"\r\n").await
}

/// Ends the body and reads the answer: its status and JSON body.
pub(crate) async fn finish(mut stream: tokio::net::TcpStream) -> (u16, Value) {
    // the server may have answered and closed already (a refused body)
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "no answer");
        let n = match tokio::time::timeout(Duration::from_secs(120), stream.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            // the server may close before reading a refused body's tail; the answer came first
            Ok(Err(_)) | Err(_) => 0,
        };
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some((status, body)) = parse_answer(&raw) {
            return (status, body);
        }
    }
    parse_answer(&raw).unwrap_or_else(|| panic!("no answer in {:?}", String::from_utf8_lossy(&raw)))
}

pub(crate) fn parse_answer(raw: &[u8]) -> Option<(u16, Value)> {
    let text = std::str::from_utf8(raw).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if name.eq_ignore_ascii_case("content-length") {
            value.trim().parse().ok()
        } else {
            None
        }
    })?;
    if body.len() < length {
        return None;
    }
    let value = serde_json::from_str(&body[..length]).ok()?;
    Some((status, value))
}

#[tokio::test]
async fn a_bom_semicolons_crlf_and_quoted_line_breaks_import() {
    let app = spawn_app().await;
    let a = app.register("dialects@c.co").await;
    // what a spreadsheet in a comma-decimal locale saves: BOM, `;`, CRLF, a note over two lines
    let csv = "\u{feff}\"Phone\";Name;Tags;Notes\r\n\
               0812-3456-7890;\"Sari; Jr\";vip;\"call after 5\r\nnot on Fridays\"\r\n\
               \r\n\
               6285712345678;Budi;\"lead,b2b\";\"said \"\"hi\"\"\"\r\n\
               12345;Nobody;;\r\n";
    let res = import(&app, &a.token, csv.to_string()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["imported"], 2, "{body}");
    assert_eq!(body["rejected_count"], 1, "{body}");
    // the note spans lines 2-3, a blank line 4: the bad row starts on line 6
    assert_eq!(body["rejected"][0]["row"], 6, "{body}");
    let sari = app
        .get_json("/api/v1/contacts/6281234567890", &a.token)
        .await;
    assert_eq!(sari["name"], "Sari; Jr");
    assert_eq!(sari["tags"], json!(["vip"]));
    assert_eq!(sari["fields"]["notes"], "call after 5\r\nnot on Fridays");
    let budi = app
        .get_json("/api/v1/contacts/6285712345678", &a.token)
        .await;
    assert_eq!(budi["tags"], json!(["b2b", "lead"]));
    assert_eq!(budi["fields"]["notes"], "said \"hi\"");
    app.stop().await;
}

#[tokio::test]
async fn a_garbage_file_gets_a_capped_rejected_list() {
    let app = spawn_app().await;
    let a = app.register("garbage@c.co").await;
    let mut csv = String::from("phone,name\n6281234567890,Sari\n");
    for i in 0..1_205 {
        csv.push_str(&format!("garbage {i},x\n"));
    }
    let res = import(&app, &a.token, csv).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["imported"], 1);
    assert_eq!(body["rejected_count"], 1_205);
    assert_eq!(body["rejected"].as_array().map(Vec::len), Some(1_000));
    assert_eq!(body["rejected_omitted"], 205);
    assert_eq!(body["rejected"][0]["row"], 3);
    assert_eq!(body["rejected"][999]["row"], 1_002);
    app.stop().await;
}

#[tokio::test]
async fn rows_for_one_phone_in_different_batches_merge_like_rows_applied_in_order() {
    let app = spawn_app().await;
    let a = app.register("dupes@c.co").await;
    let mut csv = String::from("phone,name,tags,city\n0812-3456-7890,Sari,a,Bandung\n");
    // enough rows in between that the second Sari row lands in a later batch
    for i in 0..(BATCH_ROWS + 599) {
        csv.push_str(&format!("62813{i:08},,,\n"));
    }
    csv.push_str("+62 812 3456 7890,Sari Dewi,b,Depok\n");
    let body: Value = import(&app, &a.token, csv)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body["imported"], BATCH_ROWS + 600, "{body}");
    assert_eq!(
        body["matched"], 1,
        "the second Sari row hit the contact: {body}"
    );
    let sari = app
        .get_json("/api/v1/contacts/6281234567890", &a.token)
        .await;
    assert_eq!(sari["name"], "Sari Dewi", "the later row's name wins");
    assert_eq!(sari["tags"], json!(["a", "b"]), "tags add up");
    assert_eq!(
        sari["fields"],
        json!({"city": "Depok"}),
        "fields are overwritten"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_row_cap_stops_an_import_after_the_rows_before_it_and_a_rerun_is_safe() {
    let app = spawn_app_configured(|s| {
        s.import_max_rows = 3_000;
        s.import_max_bytes = 200 * 1024;
    })
    .await;
    let a = app.register("caps@c.co").await;
    let file = format!("phone,notes\n{}", rows("812", 0, 3_500, "n"));
    let (code, body) = error_code(
        import(&app, &a.token, file).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert_eq!(code, "payload_too_large");
    let applied = &body["error"]["details"]["applied"];
    assert_eq!(applied["rows"], 3_000, "{body}");
    assert_eq!(applied["through_line"], 3_001, "{body}");
    assert_eq!(applied["imported"], 3_000, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("through line 3001"),
        "{body}"
    );
    assert_eq!(contacts_of(&app, &a.tenant_id).await, 3_000);
    app.get_json("/api/v1/contacts/6281200002999", &a.token)
        .await
        .get("phone")
        .expect("the 3,000th row was applied");
    let res = app.get("/api/v1/contacts/6281200003000", &a.token).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND, "nothing after the cap");

    // the same rows again: nothing new, nothing lost
    let again: Value = import(
        &app,
        &a.token,
        format!("phone,notes\n{}", rows("812", 0, 3_000, "n")),
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(again["imported"], 0, "{again}");
    assert_eq!(again["matched"], 3_000, "{again}");

    // a body announced over the byte cap is refused before anything is read
    let big = format!("phone,notes\n{}", rows("813", 0, 3_000, &"x".repeat(80)));
    let (code, body) = error_code(
        import(&app, &a.token, big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert_eq!(code, "payload_too_large");
    assert!(body["error"]["details"].is_null(), "{body}");
    assert_eq!(contacts_of(&app, &a.tenant_id).await, 3_000);
    app.stop().await;
}

#[tokio::test]
async fn the_byte_cap_stops_a_streamed_body_after_the_rows_before_it() {
    let app = spawn_app_configured(|s| s.import_max_bytes = 200 * 1024).await;
    let a = app.register("bytes@c.co").await;
    // 100-byte rows, no Content-Length: the cap (2,048 rows' worth) is found while reading
    let mut stream = chunked_import(&app, &a.token).await;
    send_chunk(&mut stream, b"phone,notes\n")
        .await
        .expect("write");
    let notes = "x".repeat(86);
    for start in (0..2_100).step_by(50) {
        // past the cap the server may stop listening: the answer says what happened
        if send_chunk(
            &mut stream,
            rows("813", start, start + 50, &notes).as_bytes(),
        )
        .await
        .is_err()
        {
            break;
        }
    }
    let (status, body) = finish(stream).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large");
    let applied = &body["error"]["details"]["applied"];
    let n = applied["rows"].as_i64().unwrap_or_default();
    assert!(n > 0 && n <= 2_048, "{body}");
    assert_eq!(applied["through_line"], n + 1, "{body}");
    // exactly the first n rows, nothing after
    let (count, last): (i64, Option<String>) =
        sqlx::query_as("SELECT count(*), max(phone) FROM contacts WHERE tenant_id = $1::uuid")
            .bind(&a.tenant_id)
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(count, n);
    assert_eq!(last, Some(format!("62813{:08}", n - 1)));
    app.stop().await;
}

#[tokio::test]
async fn an_unclosed_quote_is_422_after_the_rows_before_it() {
    let app = spawn_app().await;
    let a = app.register("quote@c.co").await;
    let mut csv = format!("phone,notes\n{}", rows("812", 0, 2_500, "fine"));
    csv.push_str("6281300000000,\"never closed\n");
    // the rest of the file would be one cell: the import stops at 1 MiB of it
    csv.push_str(&rows("813", 1, 60_000, "swallowed"));
    let (code, body) = error_code(
        import(&app, &a.token, csv).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(code, "validation_failed");
    assert_eq!(body["error"]["details"]["field"], "csv", "{body}");
    assert_eq!(body["error"]["details"]["applied"]["rows"], 2_500, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("line 2502"),
        "{body}"
    );
    assert_eq!(contacts_of(&app, &a.tenant_id).await, 2_500);
    app.stop().await;
}

#[tokio::test]
async fn a_dropped_upload_keeps_every_complete_row_and_a_rerun_completes_it() {
    let app = spawn_app().await;
    let a = app.register("dropped@c.co").await;
    let mut stream = chunked_import(&app, &a.token).await;
    send_chunk(&mut stream, b"phone,notes\n")
        .await
        .expect("write");
    for start in (0..4_500).step_by(100) {
        send_chunk(&mut stream, rows("812", start, start + 100, "n").as_bytes())
            .await
            .expect("write");
    }
    // the first batch is in: the import is under way
    let deadline = Instant::now() + Duration::from_secs(120);
    while contacts_of(&app, &a.tenant_id).await < BATCH_ROWS as i64 {
        assert!(Instant::now() < deadline, "the first batch was not applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // half a row (itself a valid phone), then the client goes away
    send_chunk(&mut stream, b"628129900012")
        .await
        .expect("write");
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(120);
    while contacts_of(&app, &a.tenant_id).await < 4_500 {
        assert!(
            Instant::now() < deadline,
            "the received rows were not applied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(contacts_of(&app, &a.tenant_id).await, 4_500);
    let res = app.get("/api/v1/contacts/628129900012", &a.token).await;
    assert_eq!(
        res.status(),
        StatusCode::NOT_FOUND,
        "a cut-off row is no row"
    );

    let file = format!("phone,notes\n{}", rows("812", 0, 5_000, "n"));
    let body: Value = import(&app, &a.token, file)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body["imported"], 500, "{body}");
    assert_eq!(body["matched"], 4_500, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn fifty_thousand_rows_import_in_bounded_batches() {
    let app = spawn_app().await;
    let a = app.register("big@c.co").await;
    let mut csv = String::from("phone,name,tags,city\n");
    for i in 0..50_000u64 {
        csv.push_str(&format!("0812{:08},Customer {i},bulk,City {}\n", i, i % 7));
    }
    let started = Instant::now();
    let res = import(&app, &a.token, csv).await;
    let took = started.elapsed();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["imported"], 50_000, "{body}");
    assert_eq!(body["matched"], 0, "{body}");
    assert_eq!(body["rejected_count"], 0, "{body}");
    // generous for a loaded 2-core CI machine in a debug build
    assert!(took < Duration::from_secs(240), "import took {took:?}");
    // the answer comes once the read model has them all
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM contacts WHERE 'bulk' = ANY(tags)")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(count, 50_000);
    // one transaction per batch, none larger than a batch
    let (transactions, largest): (i64, Option<i64>) = sqlx::query_as(
        "SELECT count(*), max(n) FROM (SELECT count(DISTINCT aggregate_id) AS n FROM events
          WHERE aggregate_type = $1 GROUP BY tx_id) t",
    )
    .bind(Contact::TYPE)
    .fetch_one(&app.pool)
    .await
    .expect("transactions");
    assert_eq!(transactions, (50_000 / BATCH_ROWS) as i64);
    assert_eq!(largest, Some(BATCH_ROWS as i64));
    eprintln!("50,000-row import took {took:?} in {transactions} transactions");
    app.stop().await;
}

#[tokio::test]
async fn an_import_counts_as_one_api_call_whatever_its_rows() {
    let app = spawn_app_configured(|s| s.default_plan = "basic".into()).await;
    let a = app.register("calls@c.co").await;
    let before = app.get_json("/api/v1/me", &a.token).await;
    let file = format!("phone,notes\n{}", rows("812", 0, 3_000, "n"));
    let res = import(&app, &a.token, file).await;
    assert_eq!(res.status(), StatusCode::OK);
    let after = app.get_json("/api/v1/me", &a.token).await;
    // the import and this second /me, whatever the 3,000 rows; no message quota used
    assert_eq!(
        after["usage"]["api_calls"].as_i64(),
        before["usage"]["api_calls"].as_i64().map(|n| n + 2),
        "{before} → {after}"
    );
    assert_eq!(after["usage"]["messages"], 0, "{after}");
    app.stop().await;
}
