//! Rendering a claimed batch's messages, off the async worker threads.
//!
//! One render is bounded (decision 0039: the template language, fuel, the output and variables
//! caps), but a hostile body over a large recipient may still take tens of milliseconds. So a
//! batch's renders run in one blocking task (one per batch, not one per recipient: the hot path
//! stays a single hop for 500 renders), and a tenant whose renders in one batch pass
//! [`TENANT_RENDER_BUDGET`] has its remaining recipients of that batch put back in the queue:
//! one tenant's templates cannot hold a batch, and the other tenants' recipients in it, for long.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::{Claimed, CompiledMessage, Outcome};

/// Render time one tenant may use in one batch. A legitimate render takes microseconds, so only a
/// template built to be slow reaches it.
pub(super) const TENANT_RENDER_BUDGET: Duration = Duration::from_millis(500);

/// When a recipient put back for the budget is tried again.
const OVER_BUDGET_RETRY: Duration = Duration::from_secs(5);

/// A claimed recipient, ready to send.
pub(super) enum Prepared {
    /// A single send: its message is on its queue row.
    Single,
    /// A campaign's recipient: the image to attach (its SHA-256) and the rendered text (the body,
    /// or the caption if it is not blank).
    Campaign {
        image: Option<String>,
        text: Option<String>,
    },
    /// Settled before any gateway call: a render that failed, a campaign that cannot be sent.
    Decided(Outcome),
}

/// The compiled message of each campaign in the batch; the outer error is passing (a database
/// error), the inner one permanent.
pub(super) type Messages = HashMap<Uuid, Result<Arc<Result<CompiledMessage, String>>, String>>;

/// Renders every campaign recipient of the batch; run it in `spawn_blocking`.
pub(super) fn render_batch(claimed: Vec<Claimed>, messages: &Messages) -> Vec<(Claimed, Prepared)> {
    let mut spent: HashMap<Uuid, Duration> = HashMap::new();
    claimed
        .into_iter()
        .map(|c| {
            let prepared = prepare(&c, messages, &mut spent);
            (c, prepared)
        })
        .collect()
}

fn prepare(c: &Claimed, messages: &Messages, spent: &mut HashMap<Uuid, Duration>) -> Prepared {
    if c.content.is_some() {
        return Prepared::Single;
    }
    let message = match messages.get(&c.campaign_id) {
        Some(Ok(message)) => message,
        Some(Err(passing)) => {
            return Prepared::Decided(Outcome::Retry(passing.clone(), Duration::from_secs(1)))
        }
        // Every campaign of the batch is looked up before rendering; kept total anyway.
        None => {
            return Prepared::Decided(Outcome::Retry(
                "the campaign's message was not loaded".into(),
                Duration::from_secs(1),
            ))
        }
    };
    let message = match message.as_ref() {
        Ok(message) => message,
        Err(reason) => return Prepared::Decided(Outcome::Failed(reason.clone())),
    };
    let used = spent.entry(c.tenant_id).or_default();
    if *used > TENANT_RENDER_BUDGET {
        return Prepared::Decided(Outcome::Retry(
            "rendering this account's templates took too long for one batch; retried in the next"
                .into(),
            OVER_BUDGET_RETRY,
        ));
    }
    let started = Instant::now();
    let rendered = render(message, c);
    *used += started.elapsed();
    match rendered {
        Ok(prepared) => prepared,
        Err(reason) => Prepared::Decided(Outcome::Failed(reason)),
    }
}

/// The recipient's text: the body, or for an image the caption (dropped when blank).
fn render(message: &CompiledMessage, c: &Claimed) -> Result<Prepared, String> {
    if let Some(sha256) = &message.image {
        let caption = message
            .caption
            .as_ref()
            .map(|t| t.render(&c.phone, None, &c.vars))
            .transpose()
            .map_err(|e| e.to_string())?
            .filter(|text| !text.trim().is_empty());
        return Ok(Prepared::Campaign {
            image: Some(sha256.clone()),
            text: caption,
        });
    }
    let body = message
        .body
        .as_ref()
        .ok_or("the campaign has no text")?
        .render(&c.phone, None, &c.vars)
        .map_err(|e| e.to_string())?;
    Ok(Prepared::Campaign {
        image: None,
        text: Some(body),
    })
}
