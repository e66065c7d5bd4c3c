//! The claim-time screen: opt-outs and the frequency cap stop campaign recipients that are not
//! sent yet, even when they arrive while the campaign runs.

use herald_domain::campaign::CampaignStatus;
use herald_domain::delivery::{delivery_id, DeliveryStatus};
use herald_domain::opt_out::OptOutSource;
use herald_domain::phone::Phone;
use herald_scheduler::frequency_cap::{self, FrequencyCap};

use crate::support::World;

fn phone(p: &str) -> Phone {
    Phone::parse(p, "ID").unwrap()
}

async fn skip_reasons(world: &World, campaign: uuid::Uuid, p: &str) -> Vec<String> {
    let payloads: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT payload::jsonb FROM events
          WHERE aggregate_id = $1 AND event_type = 'DeliverySkipped' ORDER BY sequence",
    )
    .bind(delivery_id(campaign, &phone(p)))
    .fetch_all(&world.pool)
    .await
    .unwrap();
    payloads
        .iter()
        .filter_map(|p| p["DeliverySkipped"]["reason"].as_str().map(str::to_owned))
        .collect()
}

fn sent_to(world: &World) -> Vec<String> {
    world.gateway.calls().into_iter().map(|c| c.1).collect()
}

#[tokio::test]
async fn an_opt_out_between_two_claims_skips_that_recipient_and_the_campaign_completes() {
    let world = World::new().await;
    let phones = ["+6281200000001", "+6281200000002", "+6281200000003"];
    let campaign = world.campaign(&phones).await;
    let dispatcher = world.dispatcher(1);
    assert_eq!(dispatcher.run_once().await.unwrap(), 1);
    let first = sent_to(&world);
    assert_eq!(first.len(), 1);
    // whoever is still queued opts out now, while the campaign runs
    let still: Vec<&str> = phones
        .iter()
        .copied()
        .filter(|p| !first.contains(&phone(p).as_str().to_string()))
        .collect();
    let out = still[0];
    assert!(herald_optouts::opt_out(
        &world.pool,
        world.tenant_id,
        phone(out),
        OptOutSource::Manual
    )
    .await
    .unwrap());
    for _ in 0..5 {
        dispatcher.run_once().await.unwrap();
    }
    let sent = sent_to(&world);
    assert_eq!(
        sent.len(),
        2,
        "the opted-out recipient was never sent: {sent:?}"
    );
    assert!(!sent.contains(&phone(out).as_str().to_string()));
    assert_eq!(
        world.delivery(campaign, out).await.status,
        DeliveryStatus::Skipped
    );
    assert_eq!(skip_reasons(&world, campaign, out).await, vec!["opted_out"]);
    assert_eq!(world.queued_rows(campaign).await, 0);
    assert_eq!(
        world.campaign_state(campaign).await.status,
        CampaignStatus::Completed
    );

    // a later campaign of the tenant skips them too; after an opt-in they are sent again
    let next = world.campaign(&[out]).await;
    dispatcher.run_once().await.unwrap();
    assert_eq!(skip_reasons(&world, next, out).await, vec!["opted_out"]);
    assert_eq!(
        world.campaign_state(next).await.status,
        CampaignStatus::Completed
    );
    herald_optouts::opt_in(
        &world.pool,
        world.tenant_id,
        phone(out),
        OptOutSource::Keyword,
    )
    .await
    .unwrap();
    let again = world.campaign(&[out]).await;
    dispatcher.run_once().await.unwrap();
    assert_eq!(
        world.delivery(again, out).await.status,
        DeliveryStatus::Sent
    );
}

#[tokio::test]
async fn another_tenants_opt_out_of_the_same_phone_changes_nothing() {
    let world = World::new().await;
    let p = "+6281200000009";
    herald_optouts::opt_out(
        &world.pool,
        uuid::Uuid::new_v4(),
        phone(p),
        OptOutSource::Keyword,
    )
    .await
    .unwrap();
    let campaign = world.campaign(&[p]).await;
    world.dispatcher(10).run_once().await.unwrap();
    assert_eq!(
        world.delivery(campaign, p).await.status,
        DeliveryStatus::Sent
    );
}

#[tokio::test]
async fn over_the_frequency_cap_a_recipient_is_skipped_and_retries_do_not_count() {
    let world = World::new().await;
    let cap = FrequencyCap {
        messages: 2,
        hours: 24,
    };
    frequency_cap::save(&world.pool, world.tenant_id, Some(cap))
        .await
        .unwrap();
    let (a, b) = ("+6281200000001", "+6281200000002");
    // a's first message needs a retry: it is one message, counted once
    world.gateway.script(
        phone(a).as_str(),
        vec![
            crate::support::Answer::Transient("busy"),
            crate::support::Answer::Accept,
        ],
    );
    let dispatcher = world.dispatcher(10);
    let first = world.campaign(&[a, b]).await;
    for _ in 0..3 {
        dispatcher.run_once().await.unwrap();
    }
    assert_eq!(world.delivery(first, a).await.status, DeliveryStatus::Sent);
    let second = world.campaign(&[a]).await;
    dispatcher.run_once().await.unwrap();
    assert_eq!(world.delivery(second, a).await.status, DeliveryStatus::Sent);
    // the third campaign message to `a` within 24 hours is over the cap; `b` had one only
    let third = world.campaign(&[a, b]).await;
    dispatcher.run_once().await.unwrap();
    assert_eq!(
        world.delivery(third, a).await.status,
        DeliveryStatus::Skipped
    );
    assert_eq!(skip_reasons(&world, third, a).await, vec!["frequency_cap"]);
    assert_eq!(world.delivery(third, b).await.status, DeliveryStatus::Sent);
    // without a cap, nothing is skipped and the counts are forgotten
    frequency_cap::save(&world.pool, world.tenant_id, None)
        .await
        .unwrap();
    let fourth = world.campaign(&[a]).await;
    dispatcher.run_once().await.unwrap();
    assert_eq!(world.delivery(fourth, a).await.status, DeliveryStatus::Sent);
}
