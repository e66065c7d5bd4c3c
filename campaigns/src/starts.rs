//! The campaign side of a scheduled start: herald-scheduler's ticker finds what is due and calls
//! this [`CampaignStarts`] implementation (handed to it by the composition root) to resolve a
//! deferred audience or write a recurring campaign's run (docs/decisions/0067).

use chrono::{DateTime, Utc};
use herald_scheduler::ticker::{CampaignStarts, RecurringRun};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::audience;
use crate::write::{self, NewCampaign, Recipient};

/// What the ticker starts campaigns with.
#[derive(Debug, Clone, Copy, Default)]
pub struct Starts;

#[async_trait::async_trait]
impl CampaignStarts for Starts {
    async fn start_deferred(
        &self,
        tx: &mut PgConnection,
        due: &[Uuid],
        started: &[Uuid],
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        audience::start_deferred(tx, due, started, now).await?;
        Ok(())
    }

    /// The run's audience, with the template as it is now.
    async fn start_run(
        &self,
        conn: &mut PgConnection,
        run: RecurringRun,
    ) -> anyhow::Result<Result<Uuid, String>> {
        let message =
            match write::message_from_template(conn, run.tenant_id, run.template_id).await? {
                Ok(m) => m,
                Err(reason) => return Ok(Err(reason)),
            };
        let mut recipients: Vec<Recipient> = serde_json::from_str(&run.recipients)?;
        if let Some(audience) = audience::parse_stored(run.audience.as_deref())? {
            let resolved = audience::resolve(conn, run.tenant_id, &audience, recipients).await?;
            if resolved.recipients.is_empty() {
                return Ok(Err(format!(
                    "no recipient: no contact with a phone has the tag {:?}",
                    audience.tag
                )));
            }
            recipients = resolved.recipients;
        }
        write::write(
            conn,
            NewCampaign {
                id: run.id,
                tenant_id: run.tenant_id,
                name: run.name,
                template_id: run.template_id,
                session_id: run.session_id,
                message,
                recipients,
                scheduled_at: None,
                parent_id: Some(run.parent),
                recurrence: None,
                pacing: None,
                at: Utc::now(),
            },
        )
        .await?;
        Ok(Ok(run.id))
    }
}
