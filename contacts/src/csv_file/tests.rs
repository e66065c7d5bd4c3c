use super::*;

/// Reads `input` with the default limits; every batch, and how reading ended.
fn read_all(input: &[u8], max_rows: usize) -> Result<(Vec<Batch>, Outcome), ContactsError> {
    let mut batches = Vec::new();
    let outcome = read_batches(input, Uuid::nil(), "ID", Utc::now(), max_rows, |b| {
        batches.push(b);
        true
    })?;
    Ok((batches, outcome))
}

fn one_batch(text: &str) -> Batch {
    let (mut batches, outcome) = read_all(text.as_bytes(), 1_000).expect("reads");
    assert!(outcome.stop.is_none(), "{:?}", outcome.stop);
    assert_eq!(batches.len(), 1);
    batches.remove(0)
}

#[test]
fn columns_become_name_tags_and_fields_and_bad_rows_are_listed() {
    let batch = one_batch(
        "\u{feff}Phone,Name,Tags,City,First Name\n\
         0812-3456-7890,Sari,vip;Lead,Bandung,Sari\n\
         not a phone,Budi,,,\n\
         +62 812 3456 7890,,b2b,,\n\
         6285700001111,Ani\n",
    );
    assert_eq!(batch.rows, 4);
    assert_eq!(batch.last_line, 5);
    assert_eq!(batch.contacts.len(), 1);
    let sari = &batch.contacts[0];
    assert_eq!(sari.rows, 2, "row 4 merged into row 2");
    assert_eq!(sari.line, 2);
    assert_eq!(sari.input, "0812-3456-7890");
    assert_eq!(sari.upsert.key.as_str(), "6281234567890");
    assert_eq!(sari.upsert.name.as_deref(), Some("Sari"));
    assert_eq!(
        sari.upsert.tags,
        Some(vec!["b2b".to_string(), "lead".into(), "vip".into()])
    );
    let fields = sari.upsert.fields.clone().unwrap_or_default();
    assert_eq!(fields["city"], "Bandung");
    assert_eq!(fields["first_name"], "Sari");
    assert_eq!(batch.rejected.len(), 2);
    assert_eq!(batch.rejected[0].row, 3);
    assert_eq!(batch.rejected[0].input, "not a phone");
    assert_eq!(batch.rejected[1].row, 5);
}

#[test]
fn a_file_without_a_phone_column_names_it() {
    for text in ["name,city\nSari,Bandung\n", "", "\u{feff}", "\n\n"] {
        match read_all(text.as_bytes(), 10) {
            Err(ContactsError::Invalid { field, .. }) => assert_eq!(field, "phone", "{text:?}"),
            other => panic!("expected a 422 naming phone for {text:?}, got {other:?}"),
        }
    }
    assert!(matches!(
        read_all(b"phone,City,city\n1,2,3\n", 10),
        Err(ContactsError::Invalid { .. })
    ));
}

#[test]
fn semicolons_crlf_a_bom_and_quoted_line_breaks() {
    let batch = one_batch(
        "\u{feff}\"Phone\";Name;Notes\r\n\
         0812-3456-7890;\"Sari; Jr\";\"first line\r\nsecond line\"\r\n\
         6285712345678;Budi;\"say \"\"hi\"\"\"\r\n",
    );
    assert_eq!(batch.rows, 2);
    assert_eq!(batch.contacts.len(), 2, "{:?}", batch.rejected);
    assert_eq!(batch.contacts[0].upsert.name.as_deref(), Some("Sari; Jr"));
    let notes = batch.contacts[0].upsert.fields.clone().unwrap_or_default();
    assert_eq!(notes["notes"], "first line\r\nsecond line");
    // the second row starts on line 4: the first one spans two lines
    assert_eq!(batch.contacts[1].line, 4);
    let notes = batch.contacts[1].upsert.fields.clone().unwrap_or_default();
    assert_eq!(notes["notes"], "say \"hi\"");
    // a comma in the header means commas, even when cells hold semicolons
    let batch = one_batch("phone,tags\n6281234567890,vip;lead\n");
    assert_eq!(
        batch.contacts[0].upsert.tags,
        Some(vec!["lead".to_string(), "vip".into()])
    );
}

#[test]
fn batches_are_cut_every_batch_rows_in_file_order() {
    let mut text = String::from("phone,name\n");
    for i in 0..(BATCH_ROWS * 2 + 500) {
        // every phone twice in a row: the pair merges within its batch
        text.push_str(&format!("62812{:08},Customer {i}\n", i / 2));
    }
    let (batches, outcome) = read_all(text.as_bytes(), 1_000_000).expect("reads");
    assert!(outcome.stop.is_none());
    assert_eq!(outcome.rows, BATCH_ROWS * 2 + 500);
    let sizes: Vec<usize> = batches.iter().map(|b| b.rows).collect();
    assert_eq!(sizes, vec![BATCH_ROWS, BATCH_ROWS, 500]);
    assert_eq!(batches[0].contacts.len(), BATCH_ROWS / 2);
    assert_eq!(batches[0].last_line, BATCH_ROWS as u64 + 1);
    assert_eq!(batches[2].last_line, (BATCH_ROWS * 2 + 500) as u64 + 1);
    assert_eq!(
        batches[1].contacts[0].upsert.key.as_str(),
        format!("62812{:08}", BATCH_ROWS / 2)
    );
}

#[test]
fn reading_stops_at_the_row_cap_after_handing_out_what_came_before() {
    let (batches, outcome) =
        read_all(b"phone\n6281234567890\n\n6281234567891\n6281234567892\n", 2).expect("reads");
    assert!(matches!(outcome.stop, Some(Stop::TooManyRows(2))));
    assert_eq!(outcome.rows, 2);
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].last_line, 4, "the blank line 3 is no row");
}

#[test]
fn an_unclosed_quote_stops_at_its_row_instead_of_swallowing_the_file() {
    let mut text = String::from("phone,notes\n6281234567890,fine\n6281234567891,\"never closed\n");
    let filler = "6281234567892,more\n".repeat((MAX_ROW_BYTES as usize / 19) * 2);
    text.push_str(&filler);
    let (batches, outcome) = read_all(text.as_bytes(), 1_000_000).expect("reads");
    assert!(
        matches!(outcome.stop, Some(Stop::RowTooLong(3))),
        "{:?}",
        outcome.stop
    );
    assert_eq!(outcome.rows, 1);
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].contacts.len(), 1);
}

#[test]
fn tags_past_the_limit_reject_the_later_row_and_keep_the_earlier() {
    let many: Vec<String> = (0..30).map(|i| format!("t{i}")).collect();
    let more: Vec<String> = (30..60).map(|i| format!("t{i}")).collect();
    let text = format!(
        "phone,name,tags\n6281234567890,Sari,\"{}\"\n6281234567890,Other,\"{}\"\n",
        many.join(";"),
        more.join(";")
    );
    let batch = one_batch(&text);
    assert_eq!(batch.contacts.len(), 1);
    assert_eq!(batch.contacts[0].rows, 1);
    assert_eq!(batch.contacts[0].upsert.name.as_deref(), Some("Sari"));
    assert_eq!(batch.rejected.len(), 1);
    assert_eq!(batch.rejected[0].row, 3);
    assert!(
        batch.rejected[0].reason.contains("50"),
        "{:?}",
        batch.rejected
    );
}

#[test]
fn a_chunk_reader_reads_what_the_async_side_sends_bom_split_included() {
    let (tx, rx) = mpsc::channel::<io::Result<Vec<u8>>>(8);
    let sender = std::thread::spawn(move || {
        for chunk in [
            vec![0xEF],
            vec![0xBB, 0xBF, b'p'],
            b"hone,na".to_vec(),
            b"me\n0812-3456-7890,Sari\n62857".to_vec(),
            b"12345678,Budi".to_vec(),
        ] {
            tx.blocking_send(Ok(chunk)).expect("reader alive");
        }
    });
    let mut batches = Vec::new();
    let outcome = read_batches(
        ChunkReader::new(rx),
        Uuid::nil(),
        "ID",
        Utc::now(),
        10,
        |b| {
            batches.push(b);
            true
        },
    )
    .expect("reads");
    sender.join().expect("sender");
    assert!(outcome.stop.is_none());
    let phones: Vec<&str> = batches[0]
        .contacts
        .iter()
        .map(|c| c.upsert.key.as_str())
        .collect();
    assert_eq!(phones, vec!["6281234567890", "6285712345678"]);

    // a failing body ends reading with its error, and the cut-off row is not handed out
    let (tx, rx) = mpsc::channel::<io::Result<Vec<u8>>>(8);
    tx.try_send(Ok(b"phone\n6281234567890\n62857".to_vec()))
        .expect("room");
    tx.try_send(Err(io::Error::other(Stop::BodyFailed("reset".into()))))
        .expect("room");
    let mut batches = Vec::new();
    let outcome = read_batches(
        ChunkReader::new(rx),
        Uuid::nil(),
        "ID",
        Utc::now(),
        10,
        |b| {
            batches.push(b);
            true
        },
    )
    .expect("reads");
    assert!(matches!(outcome.stop, Some(Stop::BodyFailed(_))));
    assert_eq!(outcome.rows, 1);
    assert_eq!(batches[0].contacts.len(), 1);
}

#[test]
fn a_nul_in_a_cell_rejects_its_row_with_the_reason_and_a_nul_in_a_header_refuses_the_file() {
    let batch = one_batch(
        "phone,name,city\n\
         6281234567890,Sa\0ri,Bandung\n\
         6281234567891,Budi,Ban\0dung\n\
         6281234567892,Ani,Bogor\n",
    );
    assert_eq!(batch.contacts.len(), 1, "only the clean row is a contact");
    assert_eq!(batch.contacts[0].upsert.name.as_deref(), Some("Ani"));
    assert_eq!(batch.rejected.len(), 2);
    assert_eq!(batch.rejected[0].row, 2);
    assert!(
        batch.rejected[0].reason.contains("column 2 (name)")
            && batch.rejected[0].reason.contains("U+0000"),
        "{}",
        batch.rejected[0].reason
    );
    assert!(
        !batch.rejected[0].input.contains('\0'),
        "the echo is storable text"
    );
    assert!(batch.rejected[1].reason.contains("column 3 (city)"));
    match read_all(b"phone,ci\0ty\n1,2\n", 10) {
        // the answer is 422 `invalid_text` naming the field (api's mapping)
        Err(ContactsError::InvalidText { field }) => assert_eq!(field, "csv.header[1]"),
        other => panic!("expected invalid_text, got {other:?}"),
    }
}
