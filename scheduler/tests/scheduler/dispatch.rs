//! Dispatch: claim, send once each with the deterministic message id, record, complete; and how
//! gateway errors end.

use herald_domain::campaign::CampaignStatus;
use herald_domain::delivery::{message_id_for, DeliveryStatus};
use herald_domain::phone::Phone;

use crate::support::{Answer, World, TOKEN};

const PHONES: [&str; 3] = ["+6281200000001", "+6281200000002", "+6281200000003"];

#[tokio::test]
async fn queued_recipients_are_sent_once_each_recorded_and_the_campaign_completes() {
    let world = World::new().await;
    let campaign = world.campaign(&PHONES).await;
    let dispatcher = world.dispatcher(500);

    assert_eq!(dispatcher.run_once().await.unwrap(), 3);
    assert_eq!(
        dispatcher.run_once().await.unwrap(),
        0,
        "nothing is left to claim"
    );

    let mut calls = world.gateway.calls();
    calls.sort();
    let mut expected: Vec<_> = PHONES
        .iter()
        .map(|p| {
            let phone = Phone::parse(p, "ID").unwrap();
            (
                TOKEN.to_string(),
                p.trim_start_matches('+').to_string(),
                message_id_for(campaign, &phone),
                "Halo Budi".to_string(),
            )
        })
        .collect();
    expected.sort();
    assert_eq!(
        calls, expected,
        "one call per recipient, under its own message id"
    );

    for p in PHONES {
        let d = world.delivery(campaign, p).await;
        assert_eq!(d.status, DeliveryStatus::Sent, "{p}");
        assert!(d.sent);
        assert_eq!(
            d.message_id.as_deref(),
            Some(message_id_for(campaign, &Phone::parse(p, "ID").unwrap()).as_str())
        );
    }
    assert_eq!(world.queued_rows(campaign).await, 0);
    assert_eq!(
        world.campaign_state(campaign).await.status,
        CampaignStatus::Completed
    );
}

#[tokio::test]
async fn a_transient_error_is_retried_and_a_permanent_one_fails_with_the_gateways_message() {
    let world = World::new().await;
    let (flaky, refused) = ("+6281200000001", "+6281200000002");
    world.gateway.script(
        flaky.trim_start_matches('+'),
        vec![Answer::Transient("gateway busy"), Answer::Accept],
    );
    world.gateway.script(
        refused.trim_start_matches('+'),
        vec![Answer::Permanent("number is not on WhatsApp")],
    );
    let campaign = world.campaign(&[flaky, refused]).await;
    let dispatcher = world.dispatcher(500);

    assert_eq!(dispatcher.run_once().await.unwrap(), 2);
    // the retry is due at once (the fake gateway's Retry-After is zero)
    assert_eq!(dispatcher.run_once().await.unwrap(), 1);
    assert_eq!(dispatcher.run_once().await.unwrap(), 0);

    let flaky_id = message_id_for(campaign, &Phone::parse(flaky, "ID").unwrap());
    let flaky_calls: Vec<_> = world
        .gateway
        .calls()
        .into_iter()
        .filter(|c| c.1 == flaky.trim_start_matches('+'))
        .map(|c| c.2)
        .collect();
    assert_eq!(
        flaky_calls,
        vec![flaky_id.clone(), flaky_id],
        "the retry reuses the message id"
    );
    let d = world.delivery(campaign, flaky).await;
    assert_eq!(d.status, DeliveryStatus::Sent);
    assert_eq!(d.attempts, 2);

    let refused_calls = world
        .gateway
        .calls()
        .iter()
        .filter(|c| c.1 == refused.trim_start_matches('+'))
        .count();
    assert_eq!(refused_calls, 1, "a permanent error is not retried");
    assert_eq!(
        world.delivery(campaign, refused).await.status,
        DeliveryStatus::Failed
    );
    assert_eq!(
        world.failure_reasons(campaign, refused).await,
        vec!["number is not on WhatsApp".to_string()]
    );
    assert_eq!(
        world.campaign_state(campaign).await.status,
        CampaignStatus::Completed
    );
}
