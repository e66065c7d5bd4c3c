//! Step 2: render the batch (see [`super::render`]) and call the gateway for each recipient,
//! classifying every answer as sent, failed or to retry.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use herald_domain::campaign::{Campaign, MessageSpec};
use herald_domain::store;
use herald_domain::template::TemplateKind;
use herald_gateway::{GatewayError, MessageContent, OutboundMessage, SendAccepted};

use crate::single_content::SingleContent;
use uuid::Uuid;

use super::*;

impl Dispatcher {
    /// Step 2a: each campaign's compiled message (cached), then every recipient's text rendered
    /// in one blocking task for the batch (see [`render`]).
    pub(super) async fn prepare(
        &self,
        claimed: Vec<Claimed>,
    ) -> anyhow::Result<Vec<(Claimed, Prepared)>> {
        let mut messages = render::Messages::new();
        for c in claimed.iter().filter(|c| c.content.is_none()) {
            if let std::collections::hash_map::Entry::Vacant(slot) = messages.entry(c.campaign_id) {
                slot.insert(self.message(c.campaign_id).await);
            }
        }
        // A panic here is a bug in the renderer: the batch's leases expire and it is resent.
        let prepared =
            tokio::task::spawn_blocking(move || render::render_batch(claimed, &messages)).await?;
        Ok(prepared)
    }

    /// Step 2b: one gateway call, classified.
    pub(super) async fn send(&self, c: &Claimed, prepared: Prepared) -> Outcome {
        // "typing…" first, inside the pacing interval (dispatch/typing.rs)
        let typed = match (&prepared, c.typing) {
            (Prepared::Campaign { text, .. }, true) => {
                self.show_typing(c, text.as_deref().unwrap_or_default())
                    .await
            }
            _ => Duration::ZERO,
        };
        let outcome = self.send_once(c, prepared).await;
        if c.pacing.is_paced() {
            // The interval drawn at the claim runs from the end of this call, so the gateway
            // never sees two sends of the session closer than it, however slow the call was
            // (less the time it showed "typing…" before it). (Until now the session was busy:
            // next_at was the lease's end.)
            let typed_ms = i32::try_from(typed.as_millis()).unwrap_or(i32::MAX);
            if let Err(e) = sqlx::query(
                "UPDATE session_pacing
                    SET next_at = clock_timestamp()
                                  + make_interval(secs => greatest(0, last_interval_ms - $2) / 1000.0)
                  WHERE session_id = $1",
            )
            .bind(c.session_id)
            .bind(typed_ms)
            .execute(&self.pool)
            .await
            {
                tracing::warn!(error = %e, "pacing not extended after a send");
            }
        }
        outcome
    }

    pub(super) async fn send_once(&self, c: &Claimed, prepared: Prepared) -> Outcome {
        let (image, text) = match (prepared, &c.content) {
            (Prepared::Decided(outcome), _) => return outcome,
            (Prepared::Single, Some(content)) => return self.send_single(c, content).await,
            (Prepared::Campaign { image, text }, None) => (image, text),
            (Prepared::Single, None) | (Prepared::Campaign { .. }, Some(_)) => {
                return Outcome::Failed("internal: a send prepared for another kind".into())
            }
        };
        let session = match self.token(c.session_id).await {
            Ok(Some(t)) => t,
            Ok(None) => return Outcome::Failed("the campaign's session no longer exists".into()),
            Err(e) => return Outcome::Retry(format!("database: {e}"), Duration::from_secs(1)),
        };
        // Image sends wait for a slot before their data URL is copied into a request.
        let _image_slot = match &image {
            Some(_) => match self.image_sends.acquire().await {
                Ok(permit) => Some(permit),
                Err(_) => return Outcome::Retry("shutting down".into(), Duration::from_secs(1)),
            },
            None => None,
        };
        let data_url = match &image {
            Some(sha256) => match self.media.data_url(sha256).await {
                Ok(Some(url)) => Some(url),
                Ok(None) => {
                    return Outcome::Failed(format!(
                        "the campaign's image ({sha256}) is no longer stored"
                    ))
                }
                Err(e) => return Outcome::Retry(format!("database: {e}"), Duration::from_secs(1)),
            },
            None => None,
        };
        let content = match data_url {
            Some(data_url) => MessageContent::Image {
                data_url: data_url.to_string(),
                caption: text,
            },
            None => MessageContent::Text {
                body: text.unwrap_or_default(),
            },
        };
        let outbound = OutboundMessage {
            phone: c.phone.clone(),
            message_id: c.message_id.clone(),
            content,
        };
        self.send_through(c, &session, &outbound).await
    }

    /// One call to the session's gateway, classified.
    pub(super) async fn send_through(
        &self,
        c: &Claimed,
        session: &SessionGateway,
        outbound: &OutboundMessage,
    ) -> Outcome {
        let gateway = if session.cloud {
            if window::needs_window(&outbound.content) {
                match window::is_open(&self.pool, c.session_id, &c.phone).await {
                    Ok(true) => {}
                    Ok(false) => return Outcome::Failed(window::OUTSIDE.into()),
                    Err(e) => {
                        return Outcome::Retry(format!("database: {e}"), Duration::from_secs(1))
                    }
                }
            }
            &self.cloud
        } else {
            &self.gateway
        };
        self.classify(c, gateway.send(&session.token, outbound).await)
    }

    /// A single send: its message is on its queue row; an image is loaded like a campaign's.
    pub(super) async fn send_single(&self, c: &Claimed, content: &SingleContent) -> Outcome {
        let session = match self.token(c.session_id).await {
            Ok(Some(session)) => session,
            Ok(None) => return Outcome::Failed("the message's session no longer exists".into()),
            Err(e) => return Outcome::Retry(format!("database: {e}"), Duration::from_secs(1)),
        };
        let (_image_slot, image) = match content.image() {
            None => (None, None),
            Some(sha256) => {
                let Ok(permit) = self.image_sends.acquire().await else {
                    return Outcome::Retry("shutting down".into(), Duration::from_secs(1));
                };
                match self.media.data_url(sha256).await {
                    Ok(Some(url)) => (Some(permit), Some(url)),
                    Ok(None) => {
                        return Outcome::Failed(format!(
                            "the message's image ({sha256}) is no longer stored"
                        ))
                    }
                    Err(e) => {
                        return Outcome::Retry(format!("database: {e}"), Duration::from_secs(1))
                    }
                }
            }
        };
        let outbound = OutboundMessage {
            phone: c.phone.clone(),
            message_id: c.message_id.clone(),
            content: content.to_gateway(image.as_deref()),
        };
        self.send_through(c, &session, &outbound).await
    }

    pub(super) fn classify(
        &self,
        c: &Claimed,
        result: Result<SendAccepted, GatewayError>,
    ) -> Outcome {
        match result {
            Ok(accepted) => Outcome::Sent(
                Utc::now(),
                (accepted.message_id != c.message_id).then_some(accepted.message_id),
            ),
            Err(GatewayError::Permanent { message }) => Outcome::Failed(message),
            // Not the recipient's fault: it stays queued, never failed for it, and the circuit
            // breaker pauses the number's campaigns (dispatch/safety/breaker.rs).
            Err(GatewayError::Halt { reason, message }) => Outcome::Halt(reason, message),
            Err(GatewayError::Transient {
                message,
                retry_after,
            }) => {
                if c.attempts >= self.config.max_attempts {
                    Outcome::Failed(format!("{message} (after {} attempts)", c.attempts))
                } else {
                    Outcome::Retry(message, retry_after.unwrap_or_else(|| backoff(c.attempts)))
                }
            }
        }
    }

    /// The campaign's compiled message; compile failures are cached (they are permanent),
    /// database errors are not (they are passing).
    pub(super) async fn message(
        &self,
        campaign_id: Uuid,
    ) -> Result<Arc<Result<CompiledMessage, String>>, String> {
        if let Some(entry) = self.messages.lock().await.get(&campaign_id) {
            return Ok(entry.clone());
        }
        let loaded = match store::load::<Campaign>(&self.pool, &campaign_id.to_string()).await {
            Ok(Some((campaign, _))) => compile(campaign.message),
            Ok(None) => Err("the campaign does not exist".to_string()),
            Err(e) => return Err(format!("database: {e}")),
        };
        let entry = Arc::new(loaded);
        let mut cache = self.messages.lock().await;
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(campaign_id, entry.clone());
        Ok(entry)
    }

    /// The session's gateway token and provider, cached briefly (a deleted session stops
    /// sending within 30 s).
    pub(super) async fn token(
        &self,
        session_id: Uuid,
    ) -> Result<Option<SessionGateway>, sqlx::Error> {
        let now = tokio::time::Instant::now();
        if let Some((token, at)) = self.tokens.lock().await.get(&session_id) {
            if now.duration_since(*at) < Duration::from_secs(30) {
                return Ok(token.clone());
            }
        }
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT gateway_token, provider FROM session_credentials WHERE session_id = $1",
        )
        .bind(session_id)
        .fetch_optional(&self.pool)
        .await?;
        let token = row.map(|(token, provider)| SessionGateway {
            token,
            cloud: provider == "cloud_api",
        });
        self.tokens
            .lock()
            .await
            .insert(session_id, (token.clone(), now));
        Ok(token)
    }
}

fn compile(message: Option<MessageSpec>) -> Result<CompiledMessage, String> {
    let message = message.ok_or("the campaign has no message")?;
    match message.kind {
        TemplateKind::Text => {
            let body = message.body.ok_or("the campaign's template has no body")?;
            let compiled = body.compile().map_err(|e| e.to_string())?;
            Ok(CompiledMessage {
                body: Some(compiled),
                caption: None,
                image: None,
            })
        }
        TemplateKind::Image => {
            let image = message
                .image
                .ok_or("the campaign's template has no processed image")?;
            let caption = message
                .caption
                .map(|c| c.compile().map_err(|e| e.to_string()))
                .transpose()?;
            Ok(CompiledMessage {
                body: None,
                caption,
                image: Some(image.sha256),
            })
        }
    }
}

/// Exponential backoff with jitter for retryable gateway errors: about 1 s, 2 s, 4 s, ... ≤ 5 min.
pub fn backoff(attempt: i32) -> Duration {
    let base = 1000u64.saturating_mul(1u64 << attempt.clamp(0, 8).saturating_sub(1).max(0) as u32);
    let base = base.min(300_000);
    let jitter = rand::random::<u64>() % (base / 2 + 1);
    Duration::from_millis(base / 2 + jitter)
}
