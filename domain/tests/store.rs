//! The event-store layer against a real Postgres: every test gets its own fresh, migrated database.
//!
//! What matters here is that the batch paths (`append_new`, `execute_batch`) write exactly the rows
//! postgres-es reads back, and that concurrent batches on the same aggregates keep every stream
//! gap-free.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use cqrs_es::AggregateError;
use herald_domain::delivery::{
    delivery_id, message_id_for, Delivery, DeliveryCommand, DeliveryEvent, DeliveryStatus,
};
use herald_domain::phone::Phone;
use herald_domain::store::{self, BatchOutcome, Known, KnownAggregates};
use herald_domain::DomainError;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

async fn fresh_pool() -> PgPool {
    herald_migrations::testing::fresh_database()
        .await
        .expect("a fresh migrated database (is Postgres running on 127.0.0.1:5432?)")
}

fn at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).expect("a valid timestamp")
}

const TENANT: Uuid = Uuid::from_u128(1);

/// The `n`th distinct Indonesian mobile number, `62812` followed by eight digits.
fn phone(n: usize) -> Phone {
    Phone::parse(&format!("62812{n:08}"), "ID").expect("a valid Indonesian mobile number")
}

fn queue(campaign: Uuid, phone: Phone) -> DeliveryCommand {
    DeliveryCommand::Queue {
        tenant_id: TENANT,
        campaign_id: campaign,
        phone,
        vars: Default::default(),
        at: at(),
    }
}

fn dispatch(campaign: Uuid, phone: &Phone, attempt: u32) -> DeliveryCommand {
    DeliveryCommand::Dispatch {
        message_id: message_id_for(campaign, phone),
        attempt,
        in_doubt: false,
        at: at(),
    }
}

fn dispatched(campaign: Uuid, phone: &Phone, attempt: u32) -> DeliveryEvent {
    DeliveryEvent::DeliveryDispatched {
        message_id: message_id_for(campaign, phone),
        attempt,
        in_doubt: false,
        at: at(),
    }
}

fn record_sent(campaign: Uuid, phone: &Phone) -> DeliveryCommand {
    DeliveryCommand::RecordSent {
        message_id: message_id_for(campaign, phone),
        at: at(),
    }
}

/// Queues recipients `numbers` of `campaign` in one committed transaction; returns their ids.
async fn queue_all(
    pool: &PgPool,
    campaign: Uuid,
    numbers: impl IntoIterator<Item = usize>,
) -> Vec<String> {
    let commands: Vec<(String, DeliveryCommand)> = numbers
        .into_iter()
        .map(|n| (delivery_id(campaign, &phone(n)), queue(campaign, phone(n))))
        .collect();
    let ids = commands.iter().map(|(id, _)| id.clone()).collect();
    let mut tx = pool.begin().await.expect("begin");
    let written = store::append_new::<Delivery>(&mut tx, commands, &())
        .await
        .expect("the events are stored")
        .expect("queueing new recipients cannot fail");
    tx.commit().await.expect("commit");
    assert!(written > 0);
    ids
}

/// One stored event, as the `events` table holds it.
#[derive(Debug)]
struct StoredEvent {
    sequence: i64,
    event_type: String,
    global_position: i64,
    tx: i64,
    metadata: String,
}

async fn stream(conn: &mut PgConnection, id: &str) -> Vec<StoredEvent> {
    sqlx::query(
        "SELECT sequence, event_type, global_position, tx_id::text::bigint AS tx,
                metadata::text AS metadata
           FROM events WHERE aggregate_type = 'Delivery' AND aggregate_id = $1 ORDER BY sequence",
    )
    .bind(id)
    .fetch_all(conn)
    .await
    .expect("events are readable")
    .into_iter()
    .map(|r| StoredEvent {
        sequence: r.get("sequence"),
        event_type: r.get("event_type"),
        global_position: r.get("global_position"),
        tx: r.get("tx"),
        metadata: r.get("metadata"),
    })
    .collect()
}

async fn sequences(pool: &PgPool, id: &str) -> Vec<i64> {
    let mut conn = pool.acquire().await.expect("a connection");
    stream(&mut conn, id)
        .await
        .iter()
        .map(|e| e.sequence)
        .collect()
}

async fn event_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
        .expect("events are countable")
}

/// Every stream in the store numbers its events 1..=n with no gap and no duplicate.
async fn assert_every_stream_gap_free(pool: &PgPool) {
    let broken: Vec<String> = sqlx::query_scalar(
        "SELECT aggregate_id FROM events GROUP BY aggregate_type, aggregate_id
          HAVING min(sequence) <> 1 OR max(sequence) <> count(*)",
    )
    .fetch_all(pool)
    .await
    .expect("streams are checkable");
    assert!(broken.is_empty(), "streams with gaps: {broken:?}");
}

fn dispatched_ok(campaign: Uuid, n: usize, attempt: u32) -> BatchOutcome<Delivery> {
    Ok(vec![dispatched(campaign, &phone(n), attempt)])
}

#[tokio::test]
async fn appended_rows_are_what_postgres_es_reads_back() {
    let pool = fresh_pool().await;
    let campaign = Uuid::new_v4();
    let ids = queue_all(&pool, campaign, 0..3).await;

    // cqrs-es loads the stream append_new wrote, handles a command on it, and appends after it
    let cqrs = store::cqrs::<Delivery>(pool.clone(), ());
    cqrs.execute(&ids[0], dispatch(campaign, &phone(0), 1))
        .await
        .expect("postgres-es loads the queued delivery and dispatches it");
    cqrs.execute(&ids[0], record_sent(campaign, &phone(0)))
        .await
        .expect("and records it sent");
    match cqrs.execute(&ids[0], queue(campaign, phone(0))).await {
        Err(AggregateError::UserError(DomainError::AlreadyExists)) => {}
        other => panic!("queueing again must be AlreadyExists, got {other:?}"),
    }

    let mut conn = pool.acquire().await.expect("a connection");
    let events = stream(&mut conn, &ids[0]).await;
    let shape: Vec<(i64, &str)> = events
        .iter()
        .map(|e| (e.sequence, e.event_type.as_str()))
        .collect();
    assert_eq!(
        shape,
        [
            (1, "DeliveryQueued"),
            (2, "DeliveryDispatched"),
            (3, "DeliverySent")
        ]
    );
    for pair in events.windows(2) {
        assert!(
            pair[0].global_position < pair[1].global_position,
            "{events:?}"
        );
        assert!(
            pair[0].tx < pair[1].tx,
            "one transaction per write: {events:?}"
        );
    }
    assert!(events.iter().all(|e| e.global_position > 0 && e.tx > 0));
    assert!(events.iter().all(|e| e.metadata == "{}"), "{events:?}");

    // the batch wrote its three streams in one transaction
    let mut first_tx = Vec::new();
    for id in &ids {
        let events = stream(&mut conn, id).await;
        first_tx.push(events[0].tx);
    }
    assert!(first_tx.iter().all(|tx| *tx == first_tx[0]), "{first_tx:?}");
    assert_eq!(sequences(&pool, &ids[1]).await, [1]);

    let (delivery, version) = store::load::<Delivery>(&pool, &ids[0])
        .await
        .expect("loadable")
        .expect("the delivery exists");
    assert_eq!(version, 3);
    assert_eq!(delivery.status, DeliveryStatus::Sent);
    assert_eq!(
        delivery.message_id,
        Some(message_id_for(campaign, &phone(0)))
    );
    assert!(store::load::<Delivery>(&pool, "nobody")
        .await
        .expect("loadable")
        .is_none());
}

#[tokio::test]
async fn append_new_reports_a_domain_error_and_writes_nothing() {
    let pool = fresh_pool().await;
    let campaign = Uuid::new_v4();
    let never_queued = delivery_id(campaign, &phone(1));
    let commands = vec![
        (delivery_id(campaign, &phone(0)), queue(campaign, phone(0))),
        (never_queued.clone(), dispatch(campaign, &phone(1), 1)),
    ];
    let mut tx = pool.begin().await.expect("begin");
    let result = store::append_new::<Delivery>(&mut tx, commands, &())
        .await
        .expect("no database error");
    tx.commit().await.expect("commit");
    assert_eq!(result, Err((never_queued, DomainError::NotFound)));
    assert_eq!(event_count(&pool).await, 0);
}

#[tokio::test]
async fn a_batch_of_500_is_written_at_once_with_outcomes_in_order() {
    let pool = fresh_pool().await;
    let campaign = Uuid::new_v4();
    // every tenth recipient was never queued: its command fails, the batch does not
    let never_queued = |n: usize| n % 10 == 9;
    queue_all(&pool, campaign, (0..500).filter(|n| !never_queued(*n))).await;

    let commands = (0..500)
        .map(|n| {
            (
                delivery_id(campaign, &phone(n)),
                dispatch(campaign, &phone(n), 1),
            )
        })
        .collect();
    let mut tx = pool.begin().await.expect("begin");
    let outcomes = store::execute_batch::<Delivery>(&mut tx, commands, &())
        .await
        .expect("the batch is stored");
    tx.commit().await.expect("commit");

    assert_eq!(outcomes.len(), 500);
    for (n, outcome) in outcomes.into_iter().enumerate() {
        let expected = if never_queued(n) {
            Err(DomainError::NotFound)
        } else {
            dispatched_ok(campaign, n, 1)
        };
        assert_eq!(outcome, expected, "outcome {n}");
    }

    let (rows, txs, span): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT tx_id),
                max(global_position) - min(global_position) + 1
           FROM events WHERE event_type = 'DeliveryDispatched' AND sequence = 2",
    )
    .fetch_one(&pool)
    .await
    .expect("countable");
    assert_eq!(rows, 450);
    assert_eq!(txs, 1, "one transaction");
    assert_eq!(span, 450, "one contiguous multi-row insert");
    assert_eq!(event_count(&pool).await, 900);
    assert_every_stream_gap_free(&pool).await;
}

#[tokio::test]
async fn commands_for_one_aggregate_in_one_batch_apply_in_order() {
    let pool = fresh_pool().await;
    let campaign = Uuid::new_v4();
    let ids = queue_all(&pool, campaign, [0]).await;
    let fresh = delivery_id(campaign, &phone(1));
    let commands = vec![
        (ids[0].clone(), dispatch(campaign, &phone(0), 1)),
        (fresh.clone(), queue(campaign, phone(1))),
        (ids[0].clone(), record_sent(campaign, &phone(0))),
        (fresh.clone(), dispatch(campaign, &phone(1), 1)),
        (ids[0].clone(), record_sent(campaign, &phone(0))),
        (ids[0].clone(), dispatch(campaign, &phone(0), 2)),
    ];
    let mut tx = pool.begin().await.expect("begin");
    let outcomes = store::execute_batch::<Delivery>(&mut tx, commands, &())
        .await
        .expect("the batch is stored");
    tx.commit().await.expect("commit");

    let sent = DeliveryEvent::DeliverySent {
        message_id: message_id_for(campaign, &phone(0)),
        at: at(),
    };
    let queued = DeliveryEvent::DeliveryQueued {
        tenant_id: TENANT,
        campaign_id: campaign,
        phone: phone(1),
        vars: Default::default(),
        at: at(),
    };
    assert_eq!(
        outcomes,
        vec![
            dispatched_ok(campaign, 0, 1),
            Ok(vec![queued]),
            Ok(vec![sent]),
            dispatched_ok(campaign, 1, 1),
            Ok(vec![]),
            Err(DomainError::Conflict("recipient is already sent".into())),
        ]
    );

    let mut conn = pool.acquire().await.expect("a connection");
    let shape = |events: Vec<StoredEvent>| {
        events
            .into_iter()
            .map(|e| (e.sequence, e.event_type))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        shape(stream(&mut conn, &ids[0]).await),
        [
            (1, "DeliveryQueued".to_string()),
            (2, "DeliveryDispatched".to_string()),
            (3, "DeliverySent".to_string()),
        ]
    );
    assert_eq!(
        shape(stream(&mut conn, &fresh).await),
        [
            (1, "DeliveryQueued".to_string()),
            (2, "DeliveryDispatched".to_string()),
        ]
    );
}

/// Waits until some backend of this database waits on a lock (a row another transaction holds).
async fn until_a_writer_waits(pool: &PgPool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(pool)
        .await
        .expect("pg_stat_activity is readable");
        if waiting > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "the second writer never blocked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_batch_that_loses_the_race_reloads_and_appends_after_the_winner() {
    let pool = fresh_pool().await;
    let campaign = Uuid::new_v4();
    let ids = queue_all(&pool, campaign, 0..20).await;

    // A dispatches 0..10 and holds its transaction open
    let mut a = pool.begin().await.expect("begin A");
    let a_commands = (0..10)
        .map(|n| (ids[n].clone(), dispatch(campaign, &phone(n), 1)))
        .collect();
    let a_outcomes = store::execute_batch::<Delivery>(&mut a, a_commands, &())
        .await
        .expect("A is stored");
    assert!(a_outcomes.iter().all(|o| o.is_ok()));

    // B dispatches 5..20: it loaded the versions before A committed, so its sequence 2 rows for
    // 5..10 wait on A's, then collide (23505) once A commits
    let mut b = pool.begin().await.expect("begin B");
    let b_commands = (5..20)
        .map(|n| (ids[n].clone(), dispatch(campaign, &phone(n), 2)))
        .collect();
    let (b_outcomes, ()) = tokio::join!(
        store::execute_batch::<Delivery>(&mut b, b_commands, &()),
        async {
            until_a_writer_waits(&pool).await;
            a.commit().await.expect("commit A");
        }
    );
    let b_outcomes = b_outcomes.expect("B retries the conflicting aggregates and is stored");
    b.commit().await.expect("commit B");
    let expected: Vec<_> = (5..20).map(|n| dispatched_ok(campaign, n, 2)).collect();
    assert_eq!(b_outcomes, expected);

    for (n, id) in ids.iter().enumerate() {
        let expected: &[i64] = match n {
            0..=4 => &[1, 2],
            5..=9 => &[1, 2, 3],
            _ => &[1, 2],
        };
        assert_eq!(sequences(&pool, id).await, expected, "recipient {n}");
    }
    let (delivery, _) = store::load::<Delivery>(&pool, &ids[7])
        .await
        .expect("loadable")
        .expect("exists");
    assert_eq!(delivery.attempts, 2, "B's dispatch applied after A's");
    assert_eq!(event_count(&pool).await, 20 + 10 + 15);
    assert_every_stream_gap_free(&pool).await;
}

/// Runs one batch in its own transaction and commits it.
/// One batch in its own transaction, used the way callers must: a retryable error (the batch
/// lost a race to a younger transaction) is retried in a fresh transaction.
async fn batch_and_commit(
    pool: &PgPool,
    commands: Vec<(String, DeliveryCommand)>,
) -> Vec<BatchOutcome<Delivery>> {
    for _ in 0..10 {
        let mut tx = pool.begin().await.expect("begin");
        match store::execute_batch::<Delivery>(&mut tx, commands.clone(), &()).await {
            Ok(outcomes) => {
                tx.commit().await.expect("commit");
                return outcomes;
            }
            Err(e) if e.is_retryable() => tx.rollback().await.expect("rollback"),
            Err(e) => panic!("the batch is stored: {e}"),
        }
    }
    panic!("the batch kept losing races")
}

#[tokio::test]
async fn concurrent_batches_on_overlapping_aggregates_both_commit_gap_free() {
    let pool = fresh_pool().await;
    let campaign = Uuid::new_v4();
    let ids = queue_all(&pool, campaign, 0..300).await;
    let rounds = 5;
    for round in 0..rounds {
        let attempt = round + 1;
        let first = (0..200)
            .map(|n| (ids[n].clone(), dispatch(campaign, &phone(n), attempt)))
            .collect();
        let second = (100..300)
            .map(|n| (ids[n].clone(), dispatch(campaign, &phone(n), attempt)))
            .collect();
        let (first, second) = tokio::join!(
            batch_and_commit(&pool, first),
            batch_and_commit(&pool, second)
        );
        assert!(first.iter().chain(&second).all(|o| o.is_ok()));
    }
    let rounds = rounds as usize;
    for (n, id) in ids.iter().enumerate() {
        let dispatches = if (100..200).contains(&n) { 2 } else { 1 } * rounds;
        let expected: Vec<i64> = (1..=1 + dispatches as i64).collect();
        assert_eq!(sequences(&pool, id).await, expected, "recipient {n}");
    }
    assert_eq!(event_count(&pool).await, (300 + 400 * rounds) as i64);
    assert_every_stream_gap_free(&pool).await;
}

#[tokio::test]
async fn concurrent_batches_in_opposite_orders_do_not_deadlock() {
    // Each insert waits on the other's uncommitted rows; written in command order, two batches
    // over the same aggregates in opposite orders wait on each other and Postgres aborts one
    // (40P01). Rows are inserted in (aggregate, sequence) order, so the waits cannot form a cycle.
    let pool = fresh_pool().await;
    let campaign = Uuid::new_v4();
    let ids = queue_all(&pool, campaign, 0..1000).await;
    let rounds = 3;
    for attempt in 1..=rounds {
        let forward = (0..1000)
            .map(|n| (ids[n].clone(), dispatch(campaign, &phone(n), attempt)))
            .collect();
        let backward = (0..1000)
            .rev()
            .map(|n| (ids[n].clone(), dispatch(campaign, &phone(n), attempt)))
            .collect();
        let (forward, backward) = tokio::join!(
            batch_and_commit(&pool, forward),
            batch_and_commit(&pool, backward)
        );
        assert!(forward.iter().chain(&backward).all(|o| o.is_ok()));
    }
    assert_eq!(
        event_count(&pool).await,
        1000 + 2 * 1000 * i64::from(rounds)
    );
    assert_every_stream_gap_free(&pool).await;
}

#[tokio::test]
async fn latest_position_is_the_newest_events_place_in_the_global_order() {
    let pool = fresh_pool().await;
    let campaign = Uuid::new_v4();
    let ids = queue_all(&pool, campaign, 0..2).await;
    store::cqrs::<Delivery>(pool.clone(), ())
        .execute(&ids[0], dispatch(campaign, &phone(0), 1))
        .await
        .expect("dispatched");

    let mut conn = pool.acquire().await.expect("a connection");
    let first = stream(&mut conn, &ids[0]).await;
    let second = stream(&mut conn, &ids[1]).await;
    let newest = &first[1];
    assert_eq!(
        store::latest_position(&pool, "Delivery", &ids[0])
            .await
            .expect("readable"),
        Some((newest.tx, newest.global_position))
    );
    assert!((first[0].tx, first[0].global_position) < (newest.tx, newest.global_position));
    assert_eq!(
        store::latest_position(&pool, "Delivery", &ids[1])
            .await
            .expect("readable"),
        Some((second[0].tx, second[0].global_position))
    );
    assert_eq!(
        store::latest_position(&pool, "Delivery", "nobody")
            .await
            .expect("readable"),
        None
    );
    assert_eq!(
        store::latest_position(&pool, "Campaign", &ids[0])
            .await
            .expect("readable"),
        None
    );
}

/// Decision 0001 orders projections by (tx_id, global_position). A transaction that got its id
/// before a younger one committed an event to the same stream must not append behind it: its
/// event would sort first and projectors would see sequence 3 before 2. The batch executor refuses
/// (retryable, nothing written); the same work in a new transaction succeeds.
#[tokio::test]
async fn an_older_transaction_cannot_append_behind_a_younger_commit() {
    let pool = fresh_pool().await;
    let campaign = Uuid::new_v4();
    let ids = queue_all(&pool, campaign, [0]).await;
    let p = phone(0);

    let mut old = pool.begin().await.expect("begin");
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *old)
        .await
        .expect("the old transaction takes its id now");

    let mut young = pool.begin().await.expect("begin");
    store::execute_batch::<Delivery>(
        &mut young,
        vec![(ids[0].clone(), dispatch(campaign, &p, 1))],
        &(),
    )
    .await
    .expect("the young transaction appends");
    young.commit().await.expect("commit");

    let refused = store::execute_batch::<Delivery>(
        &mut old,
        vec![(ids[0].clone(), record_sent(campaign, &p))],
        &(),
    )
    .await;
    assert!(
        matches!(refused, Err(ref e) if e.is_retryable() && matches!(e, store::StoreError::OutOfOrder)),
        "{refused:?}"
    );
    old.rollback().await.expect("rollback");
    assert_eq!(sequences(&pool, &ids[0]).await, vec![1, 2]);

    let mut retry = pool.begin().await.expect("begin");
    let outcomes = store::execute_batch::<Delivery>(
        &mut retry,
        vec![(ids[0].clone(), record_sent(campaign, &p))],
        &(),
    )
    .await
    .expect("a new transaction may append");
    retry.commit().await.expect("commit");
    assert!(matches!(outcomes.as_slice(), [Ok(events)] if events.len() == 1));
    assert_eq!(sequences(&pool, &ids[0]).await, vec![1, 2, 3]);
}

/// The planner settings of `plan_as_key_lookups` hold for its transaction and nowhere else: a
/// pooled connection handed on afterwards plans as usual.
#[tokio::test]
async fn key_lookup_planning_ends_with_its_transaction() {
    let pool = fresh_pool().await;
    let mut conn = pool.acquire().await.expect("connection");
    let setting = |name: &'static str| {
        sqlx::query_scalar::<_, String>("SELECT current_setting($1)").bind(name)
    };
    let mut tx = sqlx::Connection::begin(&mut *conn).await.expect("begin");
    store::plan_as_key_lookups(&mut tx).await.expect("plan");
    for name in ["enable_seqscan", "enable_hashjoin", "enable_mergejoin"] {
        assert_eq!(
            setting(name).fetch_one(&mut *tx).await.expect("show"),
            "off",
            "{name} in the transaction"
        );
    }
    // the message_index lookup of a receipt batch uses the primary key even on a tiny table
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT m.delivery_id FROM message_index m
           JOIN UNNEST($1::text[]) AS k(id) ON m.message_id = k.id",
    )
    .bind(vec!["a".to_string(), "b".to_string()])
    .fetch_all(&mut *tx)
    .await
    .expect("explain");
    assert!(
        plan.iter().any(|l| l.contains("message_index_pkey")),
        "index lookups: {plan:#?}"
    );
    tx.commit().await.expect("commit");
    for name in ["enable_seqscan", "enable_hashjoin", "enable_mergejoin"] {
        assert_eq!(
            setting(name).fetch_one(&mut *conn).await.expect("show"),
            "on",
            "{name} after the transaction"
        );
    }
}

fn mark_delivered() -> DeliveryCommand {
    DeliveryCommand::MarkDelivered { at: at() }
}

fn mark_read() -> DeliveryCommand {
    DeliveryCommand::MarkRead { at: at() }
}

fn receipts_only(command: &DeliveryCommand) -> bool {
    matches!(
        command,
        DeliveryCommand::MarkDelivered { .. } | DeliveryCommand::MarkRead { .. }
    )
}

/// One committed `execute_batch_known`; remembers what it left, as the inbox processor does.
async fn batch_with_known(
    pool: &PgPool,
    known: &mut KnownAggregates<Delivery>,
    commands: Vec<(String, DeliveryCommand)>,
) -> (Vec<BatchOutcome<Delivery>>, usize) {
    let mut tx = pool.begin().await.expect("begin");
    let result = store::execute_batch_known::<Delivery>(
        &mut tx,
        commands,
        &(),
        Some(Known {
            aggregates: known,
            trusted: receipts_only,
        }),
    )
    .await
    .expect("the batch is stored");
    tx.commit().await.expect("commit");
    known.remember(result.states);
    (result.outcomes, result.reused)
}

#[tokio::test]
async fn a_known_copy_spares_the_load_and_writes_the_same_events() {
    let pool = fresh_pool().await;
    let campaign = Uuid::new_v4();
    let ids = queue_all(&pool, campaign, 0..3).await;
    let mut known = KnownAggregates::new(100);

    let delivered = ids
        .iter()
        .map(|id| (id.clone(), mark_delivered()))
        .collect();
    let (outcomes, reused) = batch_with_known(&pool, &mut known, delivered).await;
    assert_eq!(reused, 0, "nothing known yet: every recipient loaded");
    assert!(outcomes
        .iter()
        .all(|o| o.as_ref().is_ok_and(|e| e.len() == 1)));
    assert_eq!(known.len(), 3);

    // the Read and a duplicate Delivered: from the copies, no load
    let mut next: Vec<(String, DeliveryCommand)> =
        ids.iter().map(|id| (id.clone(), mark_read())).collect();
    next.push((ids[0].clone(), mark_delivered()));
    let (outcomes, reused) = batch_with_known(&pool, &mut known, next).await;
    assert_eq!(reused, 3);
    assert_eq!(
        outcomes,
        vec![
            Ok(vec![DeliveryEvent::DeliveryRead { at: at() }]),
            Ok(vec![DeliveryEvent::DeliveryRead { at: at() }]),
            Ok(vec![DeliveryEvent::DeliveryRead { at: at() }]),
            Ok(vec![]),
        ]
    );
    for id in &ids {
        assert_eq!(sequences(&pool, id).await, vec![1, 2, 3]);
    }
    let (status, delivered_at, read_at) = {
        let mut conn = pool.acquire().await.expect("a connection");
        let mut all = store::load_many::<Delivery>(&mut conn, &ids)
            .await
            .expect("loadable");
        let (d, _) = all.remove(&ids[2]).expect("recipient 2 exists");
        (d.status, d.delivered_at, d.read_at)
    };
    assert_eq!(status, DeliveryStatus::Read);
    assert_eq!((delivered_at, read_at), (Some(at()), Some(at())));
}

#[tokio::test]
async fn a_stale_known_copy_meets_the_newer_event_and_is_loaded_again() {
    let pool = fresh_pool().await;
    let campaign = Uuid::new_v4();
    let ids = queue_all(&pool, campaign, [0]).await;
    let id = ids[0].clone();
    let mut known = KnownAggregates::new(100);
    batch_with_known(&pool, &mut known, vec![(id.clone(), mark_delivered())]).await;

    // another writer (another Herald instance) records the Read behind the copy's back
    let mut tx = pool.begin().await.expect("begin");
    store::execute_batch::<Delivery>(&mut tx, vec![(id.clone(), mark_read())], &())
        .await
        .expect("the other writer's batch is stored");
    tx.commit().await.expect("commit");

    // the copy still says unread: its Read meets the other writer's event, and after the reload
    // there is nothing left to record
    let (outcomes, reused) =
        batch_with_known(&pool, &mut known, vec![(id.clone(), mark_read())]).await;
    assert_eq!(reused, 1);
    assert_eq!(outcomes, vec![Ok(vec![])]);
    assert_eq!(sequences(&pool, &id).await, vec![1, 2, 3]);
    let reads: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'DeliveryRead'",
    )
    .bind(&id)
    .fetch_one(&pool)
    .await
    .expect("countable");
    assert_eq!(reads, 1, "one Read, whoever wrote it");

    // and the copy now holds the reloaded state
    let (outcomes, _) = batch_with_known(&pool, &mut known, vec![(id.clone(), mark_read())]).await;
    assert_eq!(outcomes, vec![Ok(vec![])]);
    assert_eq!(sequences(&pool, &id).await, vec![1, 2, 3]);
}

#[tokio::test]
async fn commands_not_trusted_with_a_copy_load_the_aggregate() {
    let pool = fresh_pool().await;
    let campaign = Uuid::new_v4();
    let ids = queue_all(&pool, campaign, [0]).await;
    let id = ids[0].clone();
    let mut tx = pool.begin().await.expect("begin");
    store::execute_batch::<Delivery>(
        &mut tx,
        vec![(id.clone(), dispatch(campaign, &phone(0), 1))],
        &(),
    )
    .await
    .expect("the dispatch is stored");
    tx.commit().await.expect("commit");
    // the receipt comes before the dispatcher has recorded the send
    let mut known = KnownAggregates::new(100);
    batch_with_known(&pool, &mut known, vec![(id.clone(), mark_delivered())]).await;

    // the dispatcher records the send meanwhile
    let mut tx = pool.begin().await.expect("begin");
    store::execute_batch::<Delivery>(
        &mut tx,
        vec![(id.clone(), record_sent(campaign, &phone(0)))],
        &(),
    )
    .await
    .expect("the dispatcher's batch is stored");
    tx.commit().await.expect("commit");

    // a second RecordSent (a Cloud API `sent` status) decides on `sent`, which other writers
    // set: it is not trusted with the copy, so the recipient is loaded and it writes nothing
    let (outcomes, reused) = batch_with_known(
        &pool,
        &mut known,
        vec![
            (id.clone(), mark_read()),
            (id.clone(), record_sent(campaign, &phone(0))),
        ],
    )
    .await;
    assert_eq!(reused, 0);
    assert_eq!(
        outcomes,
        vec![
            Ok(vec![DeliveryEvent::DeliveryRead { at: at() }]),
            Ok(vec![])
        ]
    );
    assert_eq!(sequences(&pool, &id).await, vec![1, 2, 3, 4, 5]);
}

#[test]
fn known_aggregates_keep_committed_states_in_two_bounded_generations() {
    let mut known = KnownAggregates::<Delivery>::new(4);
    let state = |v: i64| (Delivery::default(), v);
    // an aggregate without events is never kept: another writer may create it at any moment
    known.remember([("none".to_string(), state(0))]);
    assert!(known.is_empty());
    known.remember((0..2).map(|n| (format!("a{n}"), state(1))));
    assert_eq!(known.len(), 2);
    // the young generation (2) is full: it becomes the old one
    known.remember((0..2).map(|n| (format!("b{n}"), state(1))));
    assert_eq!(known.len(), 4);
    // and the next turn drops the oldest two
    known.remember([("c0".to_string(), state(1))]);
    assert_eq!(known.len(), 3);
    // remembering a kept one again neither grows nor turns the generations
    known.remember([("c0".to_string(), state(2))]);
    assert_eq!(known.len(), 3);

    // a capacity of 0 keeps nothing (InboxConfig::known_deliveries = 0 turns the reuse off)
    let mut none = KnownAggregates::<Delivery>::new(0);
    none.remember([("a".to_string(), state(1))]);
    assert!(none.is_empty());
}
