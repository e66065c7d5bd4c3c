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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pacing::Pacing;
    use herald_domain::template_body::TemplateBody;
    use serde_json::json;

    fn claimed(tenant: Uuid, campaign: Uuid, phone: &str, vars: serde_json::Value) -> Claimed {
        Claimed {
            campaign_id: campaign,
            phone: phone.into(),
            tenant_id: tenant,
            session_id: Uuid::nil(),
            message_id: format!("m-{phone}"),
            vars: match vars {
                serde_json::Value::Object(map) => map,
                _ => serde_json::Map::new(),
            },
            attempts: 1,
            in_doubt: false,
            waiting_quota: false,
            waiting_window: false,
            waiting_cap: false,
            typing: false,
            interval_ms: 0,
            content: None,
            pacing: Pacing {
                min_interval_ms: 0,
                max_interval_ms: 0,
            },
        }
    }

    fn text_message(source: &str) -> Arc<Result<CompiledMessage, String>> {
        let body = TemplateBody::parse(source).and_then(|b| b.compile());
        Arc::new(body.map_err(|e| e.to_string()).map(|body| CompiledMessage {
            body: Some(body),
            caption: None,
            image: None,
        }))
    }

    /// A tenant whose template is built to be slow uses its render budget and has the rest of
    /// its recipients put back; the other tenant's recipients in the same batch are all rendered.
    #[test]
    fn a_slow_tenant_is_held_to_its_budget_and_others_are_rendered() {
        let (slow, fast) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let (slow_campaign, fast_campaign) = (Uuid::from_u128(11), Uuid::from_u128(12));
        let mut messages = Messages::new();
        messages.insert(
            slow_campaign,
            Ok(text_message(
                "{% for a in items %}{% for b in items %}\
                 {% if 2999 in items and text | upper | length > 0 %}{% endif %}\
                 {% endfor %}{% endfor %}",
            )),
        );
        messages.insert(fast_campaign, Ok(text_message("Hi {{ name }}")));
        let items: Vec<u32> = (0..3000).collect();
        let heavy = json!({"items": items, "text": "ß".repeat(14_000)});
        let mut batch = Vec::new();
        for i in 0..40 {
            batch.push(claimed(
                slow,
                slow_campaign,
                &format!("1{i}"),
                heavy.clone(),
            ));
            batch.push(claimed(
                fast,
                fast_campaign,
                &format!("2{i}"),
                json!({"name": "Ayu"}),
            ));
        }
        let started = Instant::now();
        let prepared = render_batch(batch, &messages);
        let elapsed = started.elapsed();
        let (mut failed, mut retried, mut rendered) = (0, 0, 0);
        for (c, p) in &prepared {
            match (c.tenant_id == slow, p) {
                (true, Prepared::Decided(Outcome::Failed(reason))) => {
                    assert!(reason.contains("too much work"), "{reason}");
                    failed += 1;
                }
                (true, Prepared::Decided(Outcome::Retry(reason, _))) => {
                    assert!(reason.contains("took too long"), "{reason}");
                    retried += 1;
                }
                (false, Prepared::Campaign { text, .. }) => {
                    assert_eq!(text.as_deref(), Some("Hi Ayu"));
                    rendered += 1;
                }
                _ => panic!("unexpected preparation for {}", c.phone),
            }
        }
        assert_eq!(rendered, 40);
        assert!(
            failed >= 1 && retried >= 1,
            "failed {failed}, retried {retried}"
        );
        assert_eq!(failed + retried, 40);
        // The batch took about the budget plus one slow render, not 40 of them.
        assert!(elapsed < TENANT_RENDER_BUDGET * 6, "{elapsed:?}");
    }

    #[test]
    fn a_campaign_that_cannot_be_compiled_fails_its_recipients_with_the_reason() {
        let campaign = Uuid::from_u128(3);
        let stored = TemplateBody::stored("{% set a = 1 %}{{ a }}".into());
        let message = stored
            .compile()
            .map_err(|e| e.to_string())
            .map(|body| CompiledMessage {
                body: Some(body),
                caption: None,
                image: None,
            });
        let mut messages = Messages::new();
        messages.insert(campaign, Ok(Arc::new(message)));
        let prepared = render_batch(
            vec![claimed(Uuid::nil(), campaign, "1", json!({}))],
            &messages,
        );
        assert!(
            matches!(&prepared[0].1, Prepared::Decided(Outcome::Failed(r)) if r.contains("set")),
        );
    }
}
