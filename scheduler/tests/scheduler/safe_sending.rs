//! Safe sending at claim time, against the fake gateway: a warm-up day caps a campaign at 20, a
//! gateway halt or a halted number pauses the campaign with its reason and loses nobody, a
//! failure spike pauses it, a send window holds recipients until it opens, and a number with
//! `typing` shows "typing…" before each paced send.

use chrono::Utc;
use herald_campaigns::control;
use herald_domain::campaign::CampaignStatus;
use herald_domain::delivery::DeliveryStatus;
use herald_domain::schedule::SendWindow;
use herald_gateway::HaltReason;
use herald_scheduler::dispatch::Dispatcher;
use herald_scheduler::safe_sending::{self, NumberSafety};

use crate::support::{Answer, World};

fn phones(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("+62812{i:08}")).collect()
}

/// Runs batches until one claims nothing.
async fn drain(dispatcher: &Dispatcher) -> usize {
    let mut total = 0;
    for _ in 0..200 {
        let n = dispatcher.run_once().await.unwrap();
        if n == 0 {
            break;
        }
        total += n;
    }
    total
}

async fn queue_flags(world: &World, campaign: uuid::Uuid) -> (i64, i64, i64) {
    sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE waiting_cap), count(*) FILTER (WHERE waiting_window)
           FROM dispatch_queue WHERE campaign_id = $1",
    )
    .bind(campaign)
    .fetch_one(&world.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn given_a_day_one_number_with_warm_up_when_a_campaign_of_25_runs_then_20_go_and_5_wait_for_tomorrow(
) {
    let world = World::new().await;
    let mut safety = NumberSafety::none(Utc::now().date_naive());
    safety.warmup = true;
    let mut conn = world.pool.acquire().await.unwrap();
    safe_sending::set_session(&mut conn, world.session_id, world.tenant_id, &safety)
        .await
        .unwrap();
    drop(conn);
    let phones = phones(25);
    let refs: Vec<&str> = phones.iter().map(String::as_str).collect();
    let campaign = world.campaign(&refs).await;

    // small batches, so the cap is counted across claims, not only inside one
    let dispatcher = world.dispatcher(7);
    drain(&dispatcher).await;

    assert_eq!(
        world.accepted().len(),
        20,
        "day one of the warm-up sends 20"
    );
    let (queued, waiting_cap, _) = queue_flags(&world, campaign).await;
    assert_eq!((queued, waiting_cap), (5, 5), "the other 5 wait, counted");
    let due: chrono::DateTime<Utc> =
        sqlx::query_scalar("SELECT min(not_before) FROM dispatch_queue WHERE campaign_id = $1")
            .bind(campaign)
            .fetch_one(&world.pool)
            .await
            .unwrap();
    let tomorrow = (Utc::now().date_naive() + chrono::Duration::days(1))
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    assert_eq!(
        due, tomorrow,
        "they are due at the next local (UTC) midnight"
    );
    assert_eq!(
        world.campaign_state(campaign).await.status,
        CampaignStatus::Running
    );

    // lifting the cap (warm-up off, no daily cap) lets them go at once, each exactly once
    safety.warmup = false;
    let mut conn = world.pool.acquire().await.unwrap();
    safe_sending::set_session(&mut conn, world.session_id, world.tenant_id, &safety)
        .await
        .unwrap();
    drop(conn);
    drain(&dispatcher).await;
    let mut accepted = world.accepted();
    accepted.sort();
    accepted.dedup();
    assert_eq!(accepted.len(), 25);
    assert_eq!(world.accepted().len(), 25, "nobody was sent twice");
    assert_eq!(
        world.campaign_state(campaign).await.status,
        CampaignStatus::Completed
    );
}

#[tokio::test]
async fn given_a_gateway_halt_mid_campaign_then_it_pauses_with_the_reason_and_resume_loses_nobody()
{
    let world = World::new().await;
    let phones = phones(6);
    let refs: Vec<&str> = phones.iter().map(String::as_str).collect();
    let campaign = world.campaign(&refs).await;
    // the third send finds the number logged out; once resumed the number is back
    let third = phones[2].trim_start_matches('+').to_string();
    world.gateway.script(
        &third,
        vec![
            Answer::Halt(HaltReason::SessionDisconnected),
            Answer::Accept,
        ],
    );
    let dispatcher = world.dispatcher(1);
    drain(&dispatcher).await;

    let state = world.campaign_state(campaign).await;
    assert_eq!(state.status, CampaignStatus::Paused);
    assert_eq!(
        world.pause_reasons(campaign).await,
        vec![Some("session_disconnected".to_string())]
    );
    // claims take due rows in any order: some went before the halted one, none after it
    let before = world.accepted().len();
    assert!(before < 6);
    let halted_calls = world.gateway.calls().len();
    assert_eq!(halted_calls, before + 1, "nothing after the halt");
    assert_eq!(
        world.queued_rows(campaign).await,
        (6 - before) as i64,
        "the refused recipient and the rest are still queued"
    );
    let refused = world.delivery(campaign, &phones[2]).await;
    assert_ne!(
        refused.status,
        DeliveryStatus::Failed,
        "never failed for it"
    );
    assert_eq!(
        drain(&dispatcher).await,
        0,
        "a tripped campaign sends nothing"
    );

    control::resume(&world.pool, world.tenant_id, campaign)
        .await
        .unwrap();
    // the refused recipient's retry waits out its short delay
    sqlx::query("UPDATE dispatch_queue SET not_before = now() WHERE campaign_id = $1")
        .bind(campaign)
        .execute(&world.pool)
        .await
        .unwrap();
    drain(&dispatcher).await;
    let mut accepted = world.accepted();
    assert_eq!(accepted.len(), 6, "each recipient accepted exactly once");
    accepted.sort();
    accepted.dedup();
    assert_eq!(accepted.len(), 6);
    for p in &phones {
        assert_eq!(
            world.delivery(campaign, p).await.status,
            DeliveryStatus::Sent
        );
    }
    assert_eq!(
        world.campaign_state(campaign).await.status,
        CampaignStatus::Completed
    );
}

#[tokio::test]
async fn given_a_number_reported_logged_out_then_the_claim_pauses_its_campaign_without_sending() {
    let world = World::new().await;
    let phones = phones(3);
    let refs: Vec<&str> = phones.iter().map(String::as_str).collect();
    let campaign = world.campaign(&refs).await;
    // what the webhook inbox writes for a LoggedOut session event
    sqlx::query(
        "INSERT INTO session_halts (session_id, reason) VALUES ($1, 'session_disconnected')",
    )
    .bind(world.session_id)
    .execute(&world.pool)
    .await
    .unwrap();
    let dispatcher = world.dispatcher(500);
    drain(&dispatcher).await;

    assert!(
        world.gateway.calls().is_empty(),
        "the gateway was not called"
    );
    assert_eq!(
        world.campaign_state(campaign).await.status,
        CampaignStatus::Paused
    );
    assert_eq!(
        world.pause_reasons(campaign).await,
        vec![Some("session_disconnected".to_string())]
    );
    let attempts: Vec<i32> =
        sqlx::query_scalar("SELECT attempts FROM dispatch_queue WHERE campaign_id = $1")
            .bind(campaign)
            .fetch_all(&world.pool)
            .await
            .unwrap();
    assert_eq!(attempts, vec![0, 0, 0], "held back, no attempt counted");
}

#[tokio::test]
async fn given_20_permanent_failures_in_the_last_50_sends_then_the_campaign_pauses_for_the_spike() {
    let world = World::new().await;
    let phones = phones(30);
    for p in &phones {
        world.gateway.script(
            p.trim_start_matches('+'),
            vec![Answer::Permanent("number banned")],
        );
    }
    let refs: Vec<&str> = phones.iter().map(String::as_str).collect();
    let campaign = world.campaign(&refs).await;
    let dispatcher = world.dispatcher(5);
    drain(&dispatcher).await;

    assert_eq!(
        world.gateway.calls().len(),
        20,
        "it stops at the 20th failure"
    );
    assert_eq!(
        world.campaign_state(campaign).await.status,
        CampaignStatus::Paused
    );
    assert_eq!(
        world.pause_reasons(campaign).await,
        vec![Some("failure_spike".to_string())]
    );
    assert_eq!(world.queued_rows(campaign).await, 10);
}

#[tokio::test]
async fn given_a_closed_window_then_recipients_wait_and_an_opened_window_sends_each_once() {
    let world = World::new().await;
    let phones = phones(4);
    let refs: Vec<&str> = phones.iter().map(String::as_str).collect();
    let campaign = world.campaign(&refs).await;
    // a one-hour window that starts two hours from now (UTC), every day
    let now = Utc::now();
    let start = (now + chrono::Duration::hours(2))
        .format("%H:00")
        .to_string();
    let end = (now + chrono::Duration::hours(3))
        .format("%H:00")
        .to_string();
    let days: Vec<String> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .map(|d| d.to_string())
        .collect();
    let closed = SendWindow::parse(&days, &start, &end, Some("UTC")).unwrap();
    let mut conn = world.pool.acquire().await.unwrap();
    safe_sending::set_campaign_window(&mut conn, world.tenant_id, campaign, Some(&closed))
        .await
        .unwrap();
    drop(conn);

    let dispatcher = world.dispatcher(500);
    drain(&dispatcher).await;
    assert!(
        world.gateway.calls().is_empty(),
        "nothing outside the window"
    );
    let (queued, _, waiting_window) = queue_flags(&world, campaign).await;
    assert_eq!((queued, waiting_window), (4, 4));
    let shown = safe_sending::of_campaigns(&world.pool, &[(campaign, world.session_id)], now)
        .await
        .unwrap();
    let next = shown[&campaign].next_window_at.expect("a next opening");
    assert!(next > now && next <= now + chrono::Duration::hours(2));

    let open = SendWindow::parse(&days, "00:00", "24:00", None).unwrap();
    let mut conn = world.pool.acquire().await.unwrap();
    safe_sending::set_campaign_window(&mut conn, world.tenant_id, campaign, Some(&open))
        .await
        .unwrap();
    drop(conn);
    drain(&dispatcher).await;
    let mut accepted = world.accepted();
    assert_eq!(accepted.len(), 4);
    accepted.sort();
    accepted.dedup();
    assert_eq!(accepted.len(), 4, "each exactly once");
    assert_eq!(
        world.campaign_state(campaign).await.status,
        CampaignStatus::Completed
    );
}

#[tokio::test]
async fn given_a_typing_number_then_each_paced_send_follows_typing_inside_the_interval() {
    let world = World::new().await;
    let mut conn = world.pool.acquire().await.unwrap();
    let pace = herald_scheduler::pacing::Pacing {
        min_interval_ms: 1_200,
        max_interval_ms: 1_200,
    };
    herald_scheduler::pacing::set_session(&mut conn, world.session_id, world.tenant_id, pace)
        .await
        .unwrap();
    let mut safety = NumberSafety::none(Utc::now().date_naive());
    safety.typing = true;
    safe_sending::set_session(&mut conn, world.session_id, world.tenant_id, &safety)
        .await
        .unwrap();
    drop(conn);
    let phones = phones(3);
    let refs: Vec<&str> = phones.iter().map(String::as_str).collect();
    let campaign = world.campaign(&refs).await;
    let dispatcher = world.dispatcher(500);
    let started = std::time::Instant::now();
    while world.accepted().len() < 3 && started.elapsed() < std::time::Duration::from_secs(15) {
        dispatcher.run_once().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(world.accepted().len(), 3);
    let timeline = world.gateway.timeline.lock().unwrap().clone();
    assert_eq!(timeline.len(), 6, "{timeline:?}");
    for pair in timeline.chunks(2) {
        let (typing, send) = (&pair[0], &pair[1]);
        let phone = send.0.trim_start_matches("send ");
        assert_eq!(typing.0, format!("typing {phone}"), "{timeline:?}");
        // "Halo Budi" is 9 characters: 3 s of typing, cut to the 1.2 s interval
        let typed = send.1 - typing.1;
        assert!(
            typed >= std::time::Duration::from_millis(1_150),
            "{typed:?}"
        );
        assert!(typed < std::time::Duration::from_millis(2_500), "{typed:?}");
    }
    // typing is inside the pace: the next typing starts about one interval after a send
    let gap = timeline[2].1 - timeline[1].1;
    assert!(gap < std::time::Duration::from_millis(1_000), "{gap:?}");
    assert_eq!(
        world.campaign_state(campaign).await.status,
        CampaignStatus::Completed
    );
}
