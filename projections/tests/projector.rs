//! The projector runtime against a real Postgres (docs/decisions/0001): commit-safe global
//! order, batch + checkpoint atomicity, one instance per projector, rebuilds, read-your-writes.
//!
//! Every test gets its own migrated database. The xmin guard is cluster-wide, so positive
//! assertions poll with a generous bound instead of sleeping a fixed time.

#[path = "projector/support.rs"]
mod support;

#[path = "projector/parking.rs"]
mod parking;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use herald_domain::campaign::{Campaign, CampaignCommand, MessageSpec};
use herald_domain::delivery::{self, Delivery, DeliveryCommand};
use herald_domain::phone::Phone;
use herald_domain::store;
use herald_domain::template::{Template, TemplateCommand, TemplateKind, TemplateStatus};
use herald_domain::template_body::TemplateBody;
use herald_migrations::testing::fresh_database;
use herald_projections::campaigns::CampaignProgressProjector;
use herald_projections::runtime::{self, Projector};
use herald_projections::templates::{self, TemplatesProjector};
use sqlx::PgPool;
use uuid::Uuid;

use support::*;

// ---------------------------------------------------------------------------------------------
// 1. Decision 3: an insert whose transaction commits late is neither skipped nor applied twice.
// ---------------------------------------------------------------------------------------------

/// T1 inserts first (smaller tx_id and global_position) but commits last, after several later
/// inserts committed. Nothing after T1 may be applied while T1 runs; once it commits, every
/// event is applied exactly once, in (tx_id, global_position) order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_commit_is_neither_skipped_nor_duplicated() -> anyhow::Result<()> {
    let pool = fresh_database().await?;
    create_seen_table(&pool).await?;
    let recorder = Recorder::new();
    let runner = Runner::start(&pool, recorder.clone(), config(100));

    // committed before T1 starts: applied while T1 is still open (the projector is alive)
    let before = insert_committed(&pool, &ids("before", 0..1)).await?;
    wait_seen(&pool, 1).await?;

    let mut t1 = pool.begin().await?;
    let held = insert_event(&mut t1, "held", 1).await?;
    let later = insert_committed(&pool, &ids("later", 0..5)).await?;
    for l in &later {
        assert!(l.0 > held.0, "a later transaction has a larger tx_id");
        assert!(
            l.1 > held.1,
            "and a larger global_position: identity order is not commit order"
        );
    }

    // later events are committed, T1's is not: a projector tailing global_position alone would
    // apply them now, move past T1's position and never come back for it
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        seen(&pool).await?,
        vec![("before-000".to_string(), 1)],
        "nothing committed after T1 started may be applied while T1 runs"
    );
    assert_eq!(checkpoint(&pool, SEEN).await?, Some(before[0]));

    t1.commit().await?;
    wait_seen(&pool, 7).await?;
    // give a duplicate apply a chance to show up before judging
    tokio::time::sleep(Duration::from_millis(200)).await;
    runner.stop().await?;

    let all = stored_events(&pool).await?;
    assert_eq!(all.len(), 7);
    assert_eq!(
        seen(&pool).await?,
        all,
        "every event once, in the store's order"
    );
    assert_eq!(
        all[1],
        ("held".to_string(), 1),
        "T1's event is ordered by its tx_id"
    );
    assert_eq!(recorder.applied(), 7, "applied exactly once each");
    assert!(recorder.duplicates().is_empty());
    assert_eq!(
        checkpoint(&pool, SEEN).await?,
        Some(last_position(&pool).await?)
    );
    assert_eq!(checkpoint(&pool, SEEN).await?, Some(*later.last().unwrap()));
    Ok(())
}

/// T1 takes its transaction id first but inserts its event only after later transactions
/// committed theirs: its event has the LARGEST global_position but the smallest tx_id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_transaction_inserting_late_is_not_skipped() -> anyhow::Result<()> {
    let pool = fresh_database().await?;
    create_seen_table(&pool).await?;
    let recorder = Recorder::new();
    let runner = Runner::start(&pool, recorder.clone(), config(100));

    let mut t1 = pool.begin().await?;
    let t1_xid: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(&mut *t1)
        .await?;
    let later = insert_committed(&pool, &ids("later", 0..4)).await?;
    let held = insert_event(&mut t1, "held", 1).await?;
    assert_eq!(held.0, t1_xid);
    assert!(later.iter().all(|l| l.0 > held.0 && l.1 < held.1));

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        seen_count(&pool).await?,
        0,
        "nothing is applied while T1 runs"
    );

    t1.commit().await?;
    wait_seen(&pool, 5).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    runner.stop().await?;

    let all = stored_events(&pool).await?;
    assert_eq!(all[0], ("held".to_string(), 1));
    assert_eq!(seen(&pool).await?, all);
    assert_eq!(recorder.applied(), 5);
    assert_eq!(checkpoint(&pool, SEEN).await?, Some(*later.last().unwrap()));
    Ok(())
}

/// Same as above, but T1 rolls back: the later events are applied once each, T1's never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_transaction_releases_the_later_events() -> anyhow::Result<()> {
    let pool = fresh_database().await?;
    create_seen_table(&pool).await?;
    let recorder = Recorder::new();
    let runner = Runner::start(&pool, recorder.clone(), config(100));

    let mut t1 = pool.begin().await?;
    insert_event(&mut t1, "held", 1).await?;
    let later = insert_committed(&pool, &ids("later", 0..5)).await?;

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        seen_count(&pool).await?,
        0,
        "nothing is applied while T1 runs"
    );

    t1.rollback().await?;
    wait_seen(&pool, 5).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    runner.stop().await?;

    let all = stored_events(&pool).await?;
    assert_eq!(
        all,
        ids("later", 0..5)
            .into_iter()
            .map(|id| (id, 1))
            .collect::<Vec<_>>()
    );
    assert_eq!(seen(&pool).await?, all);
    assert_eq!(recorder.applied(), 5);
    assert_eq!(checkpoint(&pool, SEEN).await?, Some(*later.last().unwrap()));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 2. Decision 4: a batch and its checkpoint commit together, or not at all.
// ---------------------------------------------------------------------------------------------

async fn failing_batches_are_retried(
    recorder: Arc<Recorder>,
    failures: usize,
) -> anyhow::Result<()> {
    let pool = fresh_database().await?;
    create_seen_table(&pool).await?;
    // 12 events in batches of 4; "ev-005" is the 2nd event of the 2nd batch, so the failed
    // batch has already recorded "ev-004" when it fails: only a rollback keeps that from counting
    insert_committed(&pool, &ids("ev", 0..12)).await?;
    let runner = Runner::start(&pool, recorder.clone(), config(4));

    wait_seen(&pool, 12).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    runner.stop().await?;

    assert_eq!(
        recorder.failed.load(std::sync::atomic::Ordering::SeqCst),
        failures
    );
    assert_eq!(seen(&pool).await?, stored_events(&pool).await?);
    assert!(
        recorder.duplicates().is_empty(),
        "{:?}",
        recorder.duplicates()
    );
    assert_eq!(
        recorder.applied(),
        12,
        "each event applied once by a committed batch"
    );
    assert_eq!(
        checkpoint(&pool, SEEN).await?,
        Some(last_position(&pool).await?)
    );
    assert_eq!(
        parked(&pool, SEEN).await?,
        vec![],
        "an event that applies on a later try is not parked"
    );
    Ok(())
}

/// Two failures of the event's own: its batch is split and the event, tried alone, applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_batches_roll_back_with_their_checkpoint() -> anyhow::Result<()> {
    failing_batches_are_retried(Recorder::failing_on("ev-005", 2), 2).await
}

/// Transient failures (a serialization failure, as a busy database reports it) park nothing:
/// the runner keeps its place, and after three in a row drops its connection (and lock) and
/// starts over. Six of them: more than an event of its own is tried before it is parked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_that_keeps_failing_reconnects_and_resumes() -> anyhow::Result<()> {
    failing_batches_are_retried(Recorder::transiently_failing_on("ev-005", 6), 6).await
}

// ---------------------------------------------------------------------------------------------
// 3. Decision 4: one instance runs each projector (advisory lock), another takes over.
// ---------------------------------------------------------------------------------------------

async fn advisory_locks_held(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks
          WHERE locktype = 'advisory' AND granted
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(pool)
    .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_runs_a_projector_and_another_takes_over() -> anyhow::Result<()> {
    let pool_a = fresh_database().await?;
    let pool_b = another_instance(&pool_a).await?;
    create_seen_table(&pool_a).await?;
    insert_committed(&pool_a, &ids("first", 0..20)).await?;

    // two instances start at the same time on a backlog
    let (rec_a, rec_b) = (Recorder::new(), Recorder::new());
    let runner_a = Runner::start(&pool_a, rec_a.clone(), config(3));
    let runner_b = Runner::start(&pool_b, rec_b.clone(), config(3));
    wait_seen(&pool_a, 20).await?;
    insert_committed(&pool_b, &ids("second", 0..5)).await?;
    wait_seen(&pool_a, 25).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;

    assert_eq!(seen(&pool_a).await?, stored_events(&pool_a).await?);
    assert_eq!(
        rec_a.applied() + rec_b.applied(),
        25,
        "each event applied once"
    );
    assert!(
        rec_a.applied() == 0 || rec_b.applied() == 0,
        "only one instance ran the projector: {} and {}",
        rec_a.applied(),
        rec_b.applied()
    );
    assert_eq!(advisory_locks_held(&pool_a).await?, 1);

    // stop the instance that runs it; the other one takes over and keeps applying
    let (active, standby, standby_rec, active_rec) = if rec_a.applied() > 0 {
        (runner_a, runner_b, rec_b, rec_a)
    } else {
        (runner_b, runner_a, rec_a, rec_b)
    };
    active.stop().await?;
    insert_committed(&pool_a, &ids("third", 0..5)).await?;
    wait_seen(&pool_a, 30).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    standby.stop().await?;

    assert_eq!(
        active_rec.applied(),
        25,
        "the stopped instance applied nothing more"
    );
    assert_eq!(
        standby_rec.applied(),
        5,
        "the other one took over where it stopped"
    );
    assert!(active_rec.duplicates().is_empty() && standby_rec.duplicates().is_empty());
    assert_eq!(seen(&pool_a).await?, stored_events(&pool_a).await?);
    assert_eq!(
        checkpoint(&pool_a, SEEN).await?,
        Some(last_position(&pool_a).await?)
    );
    Ok(())
}

/// `catch_up` (what `herald projections rebuild` runs) refuses while an instance runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_refuses_while_a_runner_holds_the_projector() -> anyhow::Result<()> {
    let pool = fresh_database().await?;
    let other = another_instance(&pool).await?;
    create_seen_table(&pool).await?;
    insert_committed(&pool, &ids("ev", 0..3)).await?;
    let recorder = Recorder::new();
    let runner = Runner::start(&pool, recorder.clone(), config(100));
    wait_seen(&pool, 3).await?;

    let refused = runtime::catch_up(&other, Recorder::new().as_ref()).await;
    assert!(refused.is_err(), "catch_up ran next to a running instance");

    runner.stop().await?;
    pool.close().await;
    insert_committed(&other, &ids("more", 0..2)).await?;
    let applied = catch_up_all(&other, Recorder::new().as_ref(), 2).await?;
    assert_eq!(applied, 2);
    assert_eq!(seen(&other).await?, stored_events(&other).await?);
    Ok(())
}

/// Runs `catch_up` until it has applied `expected` events in all, or `PATIENCE` passes; returns
/// how many it applied. One call applies only what is visible: a transaction of another test that
/// is still running holds the (cluster-wide) xmin guard back. Calls that fail because an instance
/// still holds the projector (its session is still closing) are retried too.
async fn catch_up_all(
    pool: &PgPool,
    projector: &dyn Projector,
    expected: usize,
) -> anyhow::Result<usize> {
    let deadline = Instant::now() + PATIENCE;
    let mut total = 0;
    loop {
        match runtime::catch_up(pool, projector).await {
            Ok(n) => total += n,
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => {}
        }
        if total >= expected || Instant::now() >= deadline {
            return Ok(total);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Rebuild: reset + replay gives the same read model, not a doubled one.
// ---------------------------------------------------------------------------------------------

/// Every row of `table` as JSON, in a stable order.
async fn table_rows(pool: &PgPool, table: &str, order: &str) -> anyhow::Result<Vec<String>> {
    Ok(sqlx::query_scalar(&format!(
        "SELECT row_to_json(t)::text FROM {table} t ORDER BY {order}"
    ))
    .fetch_all(pool)
    .await?)
}

async fn event_count(pool: &PgPool) -> anyhow::Result<usize> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await?;
    Ok(usize::try_from(n)?)
}

fn phone(i: usize) -> Phone {
    Phone::from_normalized(&format!("62812345{i:04}")).expect("a valid phone")
}

/// A campaign of `n` recipients, written the way the API accepts one; returns its id.
async fn create_campaign(pool: &PgPool, tenant: Uuid, n: usize) -> anyhow::Result<Uuid> {
    let id = Uuid::new_v4();
    let now = Utc::now();
    let mut tx = pool.begin().await?;
    let create = CampaignCommand::Create {
        tenant_id: tenant,
        name: "Spring sale".into(),
        template_id: Uuid::new_v4(),
        session_id: Uuid::new_v4(),
        message: MessageSpec {
            kind: TemplateKind::Text,
            body: Some(TemplateBody::parse("Hello {{ name }}").expect("a valid body")),
            caption: None,
            image_url: None,
            image: None,
        },
        total_recipients: n as u64,
        scheduled_at: None,
        parent_id: None,
        recurrence: None,
        at: now,
    };
    store::append_new::<Campaign>(&mut tx, vec![(id.to_string(), create)], &())
        .await?
        .map_err(|(id, e)| anyhow::anyhow!("{id}: {e}"))?;
    let queue = (0..n)
        .map(|i| {
            let cmd = DeliveryCommand::Queue {
                tenant_id: tenant,
                campaign_id: id,
                phone: phone(i),
                vars: Default::default(),
                at: now,
            };
            (delivery::delivery_id(id, &phone(i)), cmd)
        })
        .collect();
    store::append_new::<Delivery>(&mut tx, queue, &())
        .await?
        .map_err(|(id, e)| anyhow::anyhow!("{id}: {e}"))?;
    tx.commit().await?;
    Ok(id)
}

/// Dispatches recipients `range` and records them sent (or failed), in one transaction each step.
async fn dispatch(
    pool: &PgPool,
    campaign: Uuid,
    range: std::ops::Range<usize>,
    fail: bool,
) -> anyhow::Result<()> {
    let now = Utc::now();
    let dispatch = range
        .clone()
        .map(|i| {
            let cmd = DeliveryCommand::Dispatch {
                message_id: delivery::message_id_for(campaign, &phone(i)),
                attempt: 1,
                in_doubt: false,
                at: now,
            };
            (delivery::delivery_id(campaign, &phone(i)), cmd)
        })
        .collect();
    let outcome = range
        .map(|i| {
            let cmd = if fail {
                DeliveryCommand::RecordFailed {
                    reason: "number not on WhatsApp".into(),
                    at: now,
                }
            } else {
                DeliveryCommand::RecordSent {
                    message_id: delivery::message_id_for(campaign, &phone(i)),
                    at: now,
                }
            };
            (delivery::delivery_id(campaign, &phone(i)), cmd)
        })
        .collect();
    for commands in [dispatch, outcome] {
        let mut tx = pool.begin().await?;
        for outcome in store::execute_batch::<Delivery>(&mut tx, commands, &()).await? {
            outcome.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        tx.commit().await?;
    }
    Ok(())
}

#[derive(Debug, PartialEq, sqlx::FromRow)]
struct Counts {
    status: String,
    total_recipients: i64,
    count_queued: i64,
    count_sending: i64,
    count_sent: i64,
    count_failed: i64,
    rows: i64,
}

async fn counts(pool: &PgPool, campaign: Uuid) -> anyhow::Result<Counts> {
    Ok(sqlx::query_as(
        "SELECT status, total_recipients, count_queued, count_sending, count_sent, count_failed,
                (SELECT count(*) FROM deliveries d WHERE d.campaign_id = c.id) AS rows
           FROM campaigns c WHERE id = $1",
    )
    .bind(campaign)
    .fetch_one(pool)
    .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuilding_campaign_progress_gives_the_same_counts() -> anyhow::Result<()> {
    let pool = fresh_database().await?;
    let tenant = Uuid::new_v4();
    let campaign = create_campaign(&pool, tenant, 25).await?;
    let other = create_campaign(&pool, tenant, 3).await?;
    dispatch(&pool, campaign, 0..15, false).await?;
    dispatch(&pool, campaign, 15..20, true).await?;
    let projector = CampaignProgressProjector;

    let applied = catch_up_all(&pool, &projector, event_count(&pool).await?).await?;
    assert_eq!(applied, event_count(&pool).await?);
    let expected = Counts {
        status: "running".into(),
        total_recipients: 25,
        count_queued: 5,
        count_sending: 0,
        count_sent: 15,
        count_failed: 5,
        rows: 25,
    };
    assert_eq!(counts(&pool, campaign).await?, expected);
    assert_eq!(counts(&pool, other).await?.count_queued, 3);
    let sent =
        herald_projections::campaigns::recipients(&pool, tenant, campaign, Some("sent"), 100, None)
            .await?;
    assert_eq!(sent.items.len(), 15);
    assert!(sent
        .items
        .iter()
        .all(|d| d.message_id.is_some() && d.sent_at.is_some()));
    let campaigns = table_rows(&pool, "campaigns", "id").await?;
    let deliveries = table_rows(&pool, "deliveries", "campaign_id, phone").await?;

    // caught up: nothing more to apply, nothing changes
    assert_eq!(runtime::catch_up(&pool, &projector).await?, 0);
    assert_eq!(counts(&pool, campaign).await?, expected);

    // rebuild: every event applied again, onto empty tables
    runtime::reset(&pool, &projector).await?;
    assert_eq!(
        table_rows(&pool, "campaigns", "id").await?,
        Vec::<String>::new()
    );
    assert_eq!(checkpoint(&pool, projector.name()).await?, Some((0, 0)));
    assert_eq!(catch_up_all(&pool, &projector, applied).await?, applied);
    assert_eq!(
        counts(&pool, campaign).await?,
        expected,
        "counts are not doubled"
    );
    assert_eq!(table_rows(&pool, "campaigns", "id").await?, campaigns);
    assert_eq!(
        table_rows(&pool, "deliveries", "campaign_id, phone").await?,
        deliveries
    );
    assert_eq!(
        checkpoint(&pool, projector.name()).await?,
        Some(last_position(&pool).await?)
    );
    Ok(())
}

/// Templates created, updated and deleted through the cqrs framework (the single-command path).
async fn write_templates(pool: &PgPool, tenant: Uuid) -> anyhow::Result<[Uuid; 3]> {
    let cqrs = store::cqrs::<Template>(pool.clone(), ());
    let ids = [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()];
    for (i, id) in ids.iter().enumerate() {
        let create = TemplateCommand::Create {
            tenant_id: tenant,
            name: format!("Template {i}"),
            kind: TemplateKind::Text,
            body: Some(TemplateBody::parse("Hi {{ name }}").expect("a valid body")),
            caption: None,
            image_url: None,
            image: None,
            at: Utc::now(),
        };
        cqrs.execute(&id.to_string(), create).await?;
    }
    let update = TemplateCommand::Update {
        tenant_id: tenant,
        name: Some("Renamed".into()),
        body: Some(TemplateBody::parse("Hello again {{ name }}").expect("a valid body")),
        caption: None,
        status: Some(TemplateStatus::Inactive),
        image: None,
        at: Utc::now(),
    };
    cqrs.execute(&ids[1].to_string(), update).await?;
    let delete = TemplateCommand::Delete {
        tenant_id: tenant,
        at: Utc::now(),
    };
    cqrs.execute(&ids[2].to_string(), delete).await?;
    Ok(ids)
}

async fn check_templates(pool: &PgPool, tenant: Uuid, ids: [Uuid; 3]) -> anyhow::Result<()> {
    let first = templates::get(pool, tenant, ids[0])
        .await?
        .expect("template 0");
    assert_eq!(
        (first.name.as_str(), first.status.as_str()),
        ("Template 0", "active")
    );
    let second = templates::get(pool, tenant, ids[1])
        .await?
        .expect("template 1");
    assert_eq!(
        (
            second.name.as_str(),
            second.status.as_str(),
            second.body.as_deref()
        ),
        ("Renamed", "inactive", Some("Hello again {{ name }}"))
    );
    assert!(
        templates::get(pool, tenant, ids[2]).await?.is_none(),
        "deleted"
    );
    assert!(
        templates::get(pool, Uuid::new_v4(), ids[0])
            .await?
            .is_none(),
        "another tenant's"
    );
    assert_eq!(
        templates::list(pool, tenant, 10, None).await?.items.len(),
        2
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuilding_templates_gives_the_same_read_model() -> anyhow::Result<()> {
    let pool = fresh_database().await?;
    let tenant = Uuid::new_v4();
    let ids = write_templates(&pool, tenant).await?;

    let applied = catch_up_all(&pool, &TemplatesProjector, 5).await?;
    assert_eq!(applied, 5);
    check_templates(&pool, tenant, ids).await?;
    let rows = table_rows(&pool, "templates", "id").await?;

    runtime::reset(&pool, &TemplatesProjector).await?;
    assert!(
        templates::get(&pool, tenant, ids[0]).await?.is_none(),
        "reset truncates"
    );
    assert_eq!(catch_up_all(&pool, &TemplatesProjector, 5).await?, 5);
    check_templates(&pool, tenant, ids).await?;
    assert_eq!(table_rows(&pool, "templates", "id").await?, rows);
    Ok(())
}

/// `herald projections rebuild` while `herald serve` runs: the reset is done by the command, the
/// running instance replays. The read model must come back by itself, even when no new event
/// arrives after the reset (a quiet system).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_instance_replays_after_a_reset() -> anyhow::Result<()> {
    let pool = fresh_database().await?;
    let tenant = Uuid::new_v4();
    let ids = write_templates(&pool, tenant).await?;
    let runner = Runner::start(&pool, Arc::new(TemplatesProjector), config(2));
    let last = last_position(&pool).await?;
    assert!(runtime::wait_for(&pool, templates::NAME, last, PATIENCE).await?);
    check_templates(&pool, tenant, ids).await?;
    let rows = table_rows(&pool, "templates", "id").await?;

    runtime::reset(&pool, &TemplatesProjector).await?;
    let rebuilt =
        eventually(|| async { Ok(table_rows(&pool, "templates", "id").await? == rows) }).await?;
    let checkpoint = checkpoint(&pool, templates::NAME).await?;
    runner.stop().await?;
    assert!(
        rebuilt,
        "the running instance did not replay after the reset"
    );
    check_templates(&pool, tenant, ids).await?;
    assert_eq!(checkpoint, Some(last));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 5. wait_for: read-your-writes for the API.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_reports_whether_the_projector_passed_a_position() -> anyhow::Result<()> {
    let pool = fresh_database().await?;
    create_seen_table(&pool).await?;
    let first = insert_committed(&pool, &ids("first", 0..1)).await?[0];
    assert_eq!(
        store::latest_position(&pool, "Test", "first-000").await?,
        Some(first),
        "the position the API waits for"
    );

    // no projector has ever run: no checkpoint row at all
    let started = Instant::now();
    let short = Duration::from_millis(300);
    assert!(!runtime::wait_for(&pool, SEEN, first, short).await?);
    assert!(started.elapsed() >= short, "it waited the whole timeout");

    // a runner applies it: true, and the read model already has the event
    let runner = Runner::start(&pool, Recorder::new(), config(100));
    assert!(runtime::wait_for(&pool, SEEN, first, PATIENCE).await?);
    assert_eq!(seen(&pool).await?, vec![("first-000".to_string(), 1)]);
    let second = insert_committed(&pool, &ids("second", 0..1)).await?[0];
    assert!(runtime::wait_for(&pool, SEEN, second, PATIENCE).await?);
    assert_eq!(seen_count(&pool).await?, 2);
    // an earlier position is passed too
    assert!(runtime::wait_for(&pool, SEEN, first, Duration::ZERO).await?);
    runner.stop().await?;

    // the projector stopped: a new event is never reached, the checkpoint exists but is behind
    let third = insert_committed(&pool, &ids("third", 0..1)).await?[0];
    let started = Instant::now();
    assert!(!runtime::wait_for(&pool, SEEN, third, short).await?);
    assert!(started.elapsed() >= short);
    assert_eq!(checkpoint(&pool, SEEN).await?, Some(second));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A projector reads only the aggregate types it asks for, and still moves past the others.
// ---------------------------------------------------------------------------------------------

/// Records the `(aggregate_type, aggregate_id)` of every event it is given; wants `Test` only.
#[derive(Default)]
struct OnlyTests {
    given: std::sync::Mutex<Vec<(String, String)>>,
}

#[async_trait::async_trait]
impl Projector for OnlyTests {
    fn name(&self) -> &'static str {
        "only_tests"
    }
    fn tables(&self) -> &'static [&'static str] {
        &[]
    }
    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&["Test"])
    }
    async fn apply(
        &self,
        _conn: &mut sqlx::PgConnection,
        events: &[runtime::StoredEvent],
    ) -> anyhow::Result<()> {
        let mut given = self.given.lock().expect("lock");
        for e in events {
            assert!(
                e.payload.contains("\"n\""),
                "a wanted event comes whole: {e:?}"
            );
            given.push((e.aggregate_type.clone(), e.aggregate_id.clone()));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_gets_only_its_aggregate_types_and_moves_past_the_rest() -> anyhow::Result<()> {
    let pool = fresh_database().await?;
    // Test, Other, Other, Test, Other: the batch ends on an event the projector does not want
    let mut conn = pool.acquire().await?;
    for (i, kind) in ["Test", "Other", "Other", "Test", "Other"]
        .iter()
        .enumerate()
    {
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                                 payload, metadata)
             VALUES ($1, $2, 1, 'Tested', '1', json_build_object('n', 1), '{}'::json)",
        )
        .bind(kind)
        .bind(format!("{kind}-{i}"))
        .execute(&mut *conn)
        .await?;
    }
    drop(conn);
    let projector = OnlyTests::default();
    let deadline = Instant::now() + PATIENCE;
    let mut scanned = 0;
    while scanned < 5 && Instant::now() < deadline {
        scanned += runtime::catch_up(&pool, &projector).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(scanned, 5, "every event is moved past");
    assert_eq!(
        *projector.given.lock().expect("lock"),
        vec![
            ("Test".to_string(), "Test-0".to_string()),
            ("Test".to_string(), "Test-3".to_string())
        ],
        "only Test events, in order"
    );
    assert_eq!(
        checkpoint(&pool, "only_tests").await?,
        Some(last_position(&pool).await?),
        "the checkpoint stands on the last event, which the projector did not want"
    );
    assert_eq!(
        runtime::catch_up(&pool, &projector).await?,
        0,
        "nothing read twice"
    );
    Ok(())
}
