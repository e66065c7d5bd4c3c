//! Resends are bounded by what was really in flight (docs/decisions/0065): with the default
//! dispatch settings (4 workers × 64 calls in flight, batches of 500), a `kill -9` at a third
//! of a 3,000-recipient campaign makes the gateway receive at most 256 recipients twice, and a
//! SIGTERM drains: the process exits within 10 s with nothing in doubt, and nobody is sent twice.

use std::time::{Duration, Instant};

use herald_simulator::{self as simulator, SimulatorConfig};

use crate::real_server::{
    self, account_with_session, start_campaign, wait_accepted, wait_completed,
};

const TOTAL: usize = 3_000;
/// The default dispatch: 4 workers × 64 calls in flight.
const IN_FLIGHT: u64 = 4 * 64;

/// The production defaults, except a short lease so the restarted process need not wait a
/// minute for the dead one's leases.
const ENV: &[(&str, &str)] = &[("HERALD_DISPATCH_LEASE_SECS", "10")];

async fn sim() -> simulator::RunningSimulator {
    simulator::spawn(
        "127.0.0.1:0",
        SimulatorConfig {
            // long enough that the kill lands with calls in flight
            latency_ms: 20,
            ..SimulatorConfig::default()
        },
    )
    .await
    .expect("simulator")
}

async fn in_doubt_dispatches(db_url: &str) -> i64 {
    let pool = sqlx::PgPool::connect(db_url).await.expect("pool");
    sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'DeliveryDispatched'
            AND payload->'DeliveryDispatched'->>'in_doubt' = 'true'",
    )
    .fetch_one(&pool)
    .await
    .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_a_third_resends_at_most_the_calls_in_flight() {
    let sim = sim().await;
    let db_url = herald_migrations::testing::fresh_database_url()
        .await
        .expect("db");
    let client = reqwest::Client::new();
    let mut herald = real_server::start(&db_url, &sim.base_url(), "all", ENV).await;
    let (token, session, template) =
        account_with_session(&client, &herald.base, "kill9@b.co").await;
    let id = start_campaign(&client, &herald.base, &token, (&session, &template), TOTAL).await;

    wait_accepted(&sim, TOTAL as u64 / 3, Duration::from_secs(120)).await;
    herald.child.kill().await.expect("SIGKILL");
    let at_kill = sim.stats().accepted;
    assert!(
        at_kill < TOTAL as u64,
        "killed mid-campaign ({at_kill} sent)"
    );

    let herald = real_server::start(&db_url, &sim.base_url(), "all", ENV).await;
    let done = wait_completed(&client, &herald.base, &token, &id, Duration::from_secs(120)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["counts"]["sent"], TOTAL, "{done}");

    let stats = sim.stats();
    assert_eq!(
        stats.unique_ids, TOTAL as u64,
        "everyone reached, once each: {stats:?}"
    );
    assert!(
        stats.duplicate_ids <= IN_FLIGHT,
        "at most the calls in flight were sent twice ({} of {at_kill} sent before the kill)",
        stats.duplicate_ids
    );
    // the resends are the in-doubt ones: each was marked so, with its message id kept
    assert!(stats.duplicate_ids as i64 <= in_doubt_dispatches(&db_url).await);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_calls_and_leaves_nothing_in_doubt() {
    let sim = sim().await;
    let db_url = herald_migrations::testing::fresh_database_url()
        .await
        .expect("db");
    let client = reqwest::Client::new();
    let mut herald = real_server::start(&db_url, &sim.base_url(), "all", ENV).await;
    let (token, session, template) = account_with_session(&client, &herald.base, "term@b.co").await;
    let id = start_campaign(&client, &herald.base, &token, (&session, &template), TOTAL).await;

    wait_accepted(&sim, TOTAL as u64 / 3, Duration::from_secs(120)).await;
    let asked = Instant::now();
    herald.terminate();
    let status = tokio::time::timeout(Duration::from_secs(15), herald.child.wait())
        .await
        .expect("herald exits after SIGTERM")
        .expect("exit status");
    let took = asked.elapsed();
    assert!(status.success(), "a clean exit: {status}");
    assert!(
        took < Duration::from_secs(10),
        "drained within 10 s ({took:?})"
    );
    let at_stop = sim.stats().accepted;
    assert!(
        at_stop < TOTAL as u64,
        "stopped mid-campaign ({at_stop} sent)"
    );

    // every call made was recorded: no lease is left for anyone to take as in doubt
    let pool = sqlx::PgPool::connect(&db_url).await.expect("pool");
    let leased: i64 =
        sqlx::query_scalar("SELECT count(*) FROM dispatch_queue WHERE state = 'leased'")
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(leased, 0, "nothing left leased after the drain");

    let herald = real_server::start(&db_url, &sim.base_url(), "all", ENV).await;
    let done = wait_completed(&client, &herald.base, &token, &id, Duration::from_secs(120)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["counts"]["sent"], TOTAL, "{done}");
    let stats = sim.stats();
    assert_eq!(stats.unique_ids, TOTAL as u64, "{stats:?}");
    assert_eq!(stats.duplicate_ids, 0, "nobody sent twice after a SIGTERM");
    assert_eq!(
        in_doubt_dispatches(&db_url).await,
        0,
        "nothing was in doubt"
    );
    sim.stop().await;
}
