//! The cancel sweep: recipients not yet sent are skipped, and the gateway never sees them.

use herald_campaigns::control;
use herald_domain::campaign::CampaignStatus;
use herald_domain::delivery::DeliveryStatus;
use herald_scheduler::sweep;

use crate::support::World;

#[tokio::test]
async fn after_a_cancel_unsent_recipients_are_skipped_and_never_reach_the_gateway() {
    let world = World::new().await;
    let phones = ["+6281200000001", "+6281200000002", "+6281200000003"];
    let campaign = world.campaign(&phones).await;
    // one recipient goes out before the cancel
    let dispatcher = world.dispatcher(1);
    assert_eq!(dispatcher.run_once().await.unwrap(), 1);
    let sent_before = world.gateway.calls();
    assert_eq!(sent_before.len(), 1);

    let skipped = control::cancel(&world.pool, world.tenant_id, campaign)
        .await
        .unwrap();
    assert_eq!(skipped, 2);
    // the periodic sweep finds nothing more, and dispatch has nothing to claim
    assert_eq!(sweep::sweep_cancelled(&world.pool).await.unwrap(), 0);
    assert_eq!(dispatcher.run_once().await.unwrap(), 0);

    assert_eq!(
        world.gateway.calls(),
        sent_before,
        "no send after the cancel"
    );
    let mut statuses = Vec::new();
    for p in phones {
        statuses.push(world.delivery(campaign, p).await.status);
    }
    statuses.sort_by_key(|s| format!("{s:?}"));
    assert_eq!(
        statuses,
        vec![
            DeliveryStatus::Sent,
            DeliveryStatus::Skipped,
            DeliveryStatus::Skipped
        ]
    );
    assert_eq!(world.queued_rows(campaign).await, 0);
    assert_eq!(
        world.campaign_state(campaign).await.status,
        CampaignStatus::Cancelled
    );
}
