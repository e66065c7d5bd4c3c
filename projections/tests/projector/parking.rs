//! Poison events (docs/decisions/0035): an event a projector cannot apply is parked with its
//! error, every other event is applied (another tenant's within a second), and `retry` applies it
//! once its cause is gone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use herald_domain::contact::{ContactEvent, ContactSource};
use herald_migrations::testing::fresh_database;
use herald_projections::contacts::ContactsProjector;
use herald_projections::maintenance::{self, RetryOutcome, Selection};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::support::*;

/// A `ContactCreated` written straight into the event store, as any writer could have.
async fn insert_contact(
    pool: &PgPool,
    tenant: Uuid,
    key: &str,
    name: &str,
) -> anyhow::Result<(i64, i64)> {
    let event = ContactEvent::ContactCreated {
        tenant_id: tenant,
        key: key.to_string(),
        name: Some(name.to_string()),
        tags: vec![],
        fields: Default::default(),
        source: ContactSource::Api,
        at: Utc::now(),
    };
    let row = sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('Contact', $1, 1, 'ContactCreated', '1.0', $2::json, '{}'::json)
         RETURNING tx_id::text::bigint AS tx, global_position",
    )
    .bind(format!("{tenant}:{key}"))
    .bind(serde_json::to_string(&event)?)
    .fetch_one(pool)
    .await?;
    Ok((row.try_get("tx")?, row.try_get("global_position")?))
}

async fn contacts_of(pool: &PgPool, tenant: Uuid) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM contacts WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_one(pool)
            .await?,
    )
}

/// Waits until every committed event is readable by projectors (below the cluster-wide xmin
/// guard, which other tests' transactions can hold back), so that what follows measures the
/// projector alone.
async fn all_visible(pool: &PgPool) -> anyhow::Result<()> {
    let visible = eventually(|| async {
        let hidden: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE tx_id >= pg_snapshot_xmin(pg_current_snapshot())",
        )
        .fetch_one(pool)
        .await?;
        Ok(hidden == 0)
    })
    .await?;
    anyhow::ensure!(visible, "events stayed behind the xmin guard");
    Ok(())
}

/// Tenant A's contact has a NUL in its name, which Postgres cannot store as text: the contacts
/// projector fails on it every time. Tenant B's contacts around it must all appear within a
/// second, A's event is parked with its error, the checkpoint passes it, a restart does not stall
/// on it again, a retry while the cause remains keeps it (counted), and a retry once the event
/// is repaired applies it and empties the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_bad_event_is_parked_and_the_others_apply_within_a_second() -> anyhow::Result<()>
{
    let pool = fresh_database().await?;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    for i in 0..5 {
        insert_contact(&pool, b, &format!("6281200000{i:02}"), "Bee").await?;
    }
    let bad = insert_contact(&pool, a, "6281299999999", "Eve\u{0}l").await?;
    for i in 5..10 {
        insert_contact(&pool, b, &format!("6281200000{i:02}"), "Bee").await?;
    }
    all_visible(&pool).await?;

    let started = Instant::now();
    let runner = Runner::start(&pool, Arc::new(ContactsProjector), config(500));
    let applied = eventually(|| async { Ok(contacts_of(&pool, b).await? == 10) }).await?;
    let took = started.elapsed();
    assert!(applied, "tenant B's contacts were not all applied");
    assert!(
        took < Duration::from_secs(1),
        "tenant B waited {took:?} behind tenant A's bad event"
    );
    assert_eq!(contacts_of(&pool, a).await?, 0);

    let listed = maintenance::parked(&pool, Some("contacts")).await?;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let p = &listed[0];
    assert_eq!((p.tx_id, p.global_position), bad);
    assert_eq!(p.aggregate_id, format!("{a}:6281299999999"));
    assert_eq!(p.event_type, "ContactCreated");
    assert_eq!(p.retries, 0);
    assert!(p.error.contains("0x00"), "the error says why: {}", p.error);
    assert!(maintenance::format_parked(&listed).contains(&format!("contacts position {}", bad.1)));
    assert!(
        eventually(|| async {
            Ok(checkpoint(&pool, "contacts").await? == Some(last_position(&pool).await?))
        })
        .await?
    );

    // a restart goes on from the checkpoint: no stall, nothing parked twice
    runner.stop().await?;
    let runner = Runner::start(&pool, Arc::new(ContactsProjector), config(500));
    insert_contact(&pool, b, "628120000010", "Bee").await?;
    assert!(eventually(|| async { Ok(contacts_of(&pool, b).await? == 11) }).await?);
    assert_eq!(maintenance::parked(&pool, None).await?.len(), 1);

    // retried while the running instance holds the projector, the cause still there
    let outcome = maintenance::retry(
        &pool,
        Some("contacts"),
        &Selection::Positions(vec![bad.1]),
        PATIENCE,
    )
    .await?;
    assert!(
        matches!(&outcome[..], [(name, pos, RetryOutcome::Failed { retries: 1, error })]
            if name == "contacts" && *pos == bad.1 && error.contains("0x00")),
        "{outcome:?}"
    );
    let listed = maintenance::parked(&pool, None).await?;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].retries, 1);
    assert!(listed[0].retried_at.is_some());

    // the operator repairs the event; no instance runs: the command applies it itself
    runner.stop().await?;
    let repaired = ContactEvent::ContactCreated {
        tenant_id: a,
        key: "6281299999999".to_string(),
        name: Some("Evel".to_string()),
        tags: vec![],
        fields: Default::default(),
        source: ContactSource::Api,
        at: Utc::now(),
    };
    sqlx::query("UPDATE events SET payload = $2::json WHERE global_position = $1")
        .bind(bad.1)
        .bind(serde_json::to_string(&repaired)?)
        .execute(&pool)
        .await?;
    let outcome = maintenance::retry(&pool, None, &Selection::All, PATIENCE).await?;
    assert_eq!(
        outcome,
        vec![("contacts".to_string(), bad.1, RetryOutcome::Applied)]
    );
    assert!(maintenance::parked(&pool, None).await?.is_empty());
    assert_eq!(contacts_of(&pool, a).await?, 1);
    assert_eq!(contacts_of(&pool, b).await?, 11);
    Ok(())
}

/// A batch of 300 with one event that always fails: it is split down to that event in a few
/// steps (not 300), the other 299 are applied once each, the checkpoint passes the parked event,
/// and the running instance applies the event when asked once the cause is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_batch_splits_to_the_event_and_the_runner_retries_it() -> anyhow::Result<()> {
    let pool = fresh_database().await?;
    create_seen_table(&pool).await?;
    let positions = insert_committed(&pool, &ids("ev", 0..300)).await?;
    let recorder = Recorder::failing_on("ev-150", usize::MAX);
    let runner = Runner::start(&pool, recorder.clone(), config(500));

    wait_seen(&pool, 299).await?;
    assert!(
        eventually(|| async {
            Ok(checkpoint(&pool, SEEN).await? == Some(last_position(&pool).await?))
        })
        .await?
    );
    let listed = parked(&pool, SEEN).await?;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].0, positions[150].1);
    assert!(listed[0].2.contains("planned failure on ev-150"));
    let failed = recorder.failed.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        failed <= 1 + 9 + 3,
        "the split took {failed} failing tries for a batch of 300"
    );
    assert!(recorder.duplicates().is_empty());

    // asked while the cause is there: tried, still parked, counted
    let outcome = maintenance::retry(&pool, None, &Selection::All, PATIENCE).await?;
    assert!(
        matches!(
            &outcome[..],
            [(_, _, RetryOutcome::Failed { retries: 1, .. })]
        ),
        "{outcome:?}"
    );
    assert_eq!(parked(&pool, SEEN).await?[0].1, 1);

    recorder.heal();
    let outcome = maintenance::retry(&pool, None, &Selection::All, PATIENCE).await?;
    assert_eq!(
        outcome,
        vec![(SEEN.to_string(), positions[150].1, RetryOutcome::Applied)]
    );
    assert!(parked(&pool, SEEN).await?.is_empty());
    assert_eq!(seen_count(&pool).await?, 300);
    assert!(recorder.duplicates().is_empty());
    runner.stop().await?;
    Ok(())
}

/// `rebuild` names every projector, refuses the notifier, and reports a replay that fails as a
/// failure; a schema the projector does not match is not the event's fault, so nothing is parked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_reports_a_failed_replay_and_knows_every_projector() -> anyhow::Result<()> {
    let pool = fresh_database().await?;
    let names: Vec<String> = maintenance::list()
        .iter()
        .map(|l| l.split('\t').next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "templates",
            "sessions",
            "campaign_progress",
            "contacts",
            "conversations",
            "notifier"
        ]
    );
    assert!(maintenance::rebuild(&pool, "notifier").await.is_err());
    let unknown = maintenance::rebuild(&pool, "nope").await.unwrap_err();
    assert!(format!("{unknown:#}").contains("conversations"));

    insert_contact(&pool, Uuid::new_v4(), "628120000001", "Bee").await?;
    all_visible(&pool).await?;
    assert_eq!(
        maintenance::rebuild(&pool, "contacts").await?,
        maintenance::Rebuilt::Replayed(1)
    );
    sqlx::query("ALTER TABLE contacts DROP COLUMN fields")
        .execute(&pool)
        .await?;
    let failed = maintenance::rebuild(&pool, "contacts").await;
    assert!(failed.is_err(), "{failed:?}");
    assert!(maintenance::parked(&pool, None).await?.is_empty());
    Ok(())
}

/// The notifier runs on the same runtime: a session event it cannot read (its stream id is no
/// uuid) is parked under `notifier`, and the next tenant's session notification still goes out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notifier_parks_what_it_cannot_read_and_goes_on() -> anyhow::Result<()> {
    use futures::StreamExt;
    use herald_domain::session::{SessionEvent, SessionStatus};
    use herald_projections::notifier::{Notifier, ProgressTracker};
    use herald_projections::notify::{Notifications, Received};

    let pool = fresh_database().await?;
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let notifications = Notifications::local(shutdown);
    let tenant = Uuid::new_v4();
    let mut subscription = notifications.subscribe(tenant).await?;
    let linked = |tenant_id| SessionEvent::SessionLinked {
        tenant_id,
        name: "Main".to_string(),
        status: SessionStatus::Disconnected,
        at: Utc::now(),
    };
    let mut positions = Vec::new();
    for (id, event) in [
        ("not-a-uuid".to_string(), linked(Uuid::new_v4())),
        (Uuid::new_v4().to_string(), linked(tenant)),
    ] {
        let row = sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             VALUES ('Session', $1, 1, 'SessionLinked', '1', $2::json, '{}'::json)
             RETURNING global_position",
        )
        .bind(id)
        .bind(serde_json::to_string(&event)?)
        .fetch_one(&pool)
        .await?;
        positions.push(row.try_get::<i64, _>("global_position")?);
    }
    let notifier = Notifier::new(notifications.clone(), Arc::new(ProgressTracker::default()));
    let runner = Runner::start(&pool, Arc::new(notifier), config(500));

    let got = tokio::time::timeout(PATIENCE, subscription.next()).await?;
    match got {
        Some(Received::Notification(n)) => {
            assert_eq!(n.id, positions[1].to_string());
            assert_eq!(n.data["status"], "disconnected");
        }
        other => panic!("no notification: {:?}", other.is_some()),
    }
    let listed = maintenance::parked(&pool, Some("notifier")).await?;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].global_position, positions[0]);
    assert_eq!(listed[0].aggregate_id, "not-a-uuid");
    runner.stop().await?;
    Ok(())
}
