//! Opt-outs found in the inbox (docs/safe-sending.md): an incoming direct message whose whole
//! text is one of its tenant's stop keywords opts the sender out of campaigns, a start keyword
//! opts it back in, and so do the Cloud API's marketing stops and resumes (`user_preferences`).
//!
//! Applied in the processor's batch transaction, after its chat messages: one look at the batch's
//! texts (a message too long to be a keyword is passed over by its length alone), one query for
//! the settings of the tenants that wrote a short text, then one batch through
//! `herald_optouts::record::apply`. A phone that opted out just now is returned with its
//! tenant's confirmation text, for the caller to send once.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use herald_domain::opt_out::{Intent, Matcher, OptOutSource, MAX_MATCH_BYTES};
use herald_domain::phone::Phone;
use herald_gateway::webhook::InboundMessage;
use herald_optouts::record::{self, Change, Outcome};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Action, Claimed};

/// A phone that has just opted out by keyword and the text to confirm it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Confirmation {
    pub tenant_id: Uuid,
    pub session_id: Uuid,
    pub phone: Phone,
    pub text: String,
}

/// The phone of a direct chat's JID (`<digits>@s.whatsapp.net`); `None` for groups, lids, ...
fn phone_of(jid: &str) -> Option<Phone> {
    let digits = jid.strip_suffix("@s.whatsapp.net")?;
    Phone::from_normalized(digits).ok()
}

/// A keyword candidate: a message someone else wrote in a direct chat, short enough.
fn candidate(m: &InboundMessage) -> Option<(Phone, &str)> {
    if m.from_me || m.is_group {
        return None;
    }
    let text = m.text.as_deref()?;
    // the matcher refuses longer texts too; this keeps them from costing a settings query
    if text.len() > MAX_MATCH_BYTES * 4 {
        return None;
    }
    Some((phone_of(&m.chat)?, text))
}

/// Finds and applies the batch's opt-outs and opt-ins; returns the confirmations to send.
pub(crate) async fn apply(
    tx: &mut PgConnection,
    claimed: &[Claimed],
) -> anyhow::Result<Vec<Confirmation>> {
    // (tenant, session, phone, text, at) of every short direct message
    let mut texts: Vec<(Uuid, Uuid, Phone, &str, DateTime<Utc>)> = Vec::new();
    let mut changes: Vec<(Change, Uuid)> = Vec::new();
    for c in claimed {
        let (messages, preferences) = match &c.action {
            Action::Message(m) => (std::slice::from_ref(m), &[][..]),
            Action::Meta(v) => (&v.messages[..], &v.preferences[..]),
            _ => continue,
        };
        for m in messages {
            if let Some((phone, text)) = candidate(m) {
                let at = m.timestamp.unwrap_or(c.received_at);
                texts.push((c.tenant_id, c.session_id, phone, text, at));
            }
        }
        for p in preferences {
            let Ok(phone) = Phone::from_normalized(&p.wa_id) else {
                continue;
            };
            let change = Change {
                tenant_id: c.tenant_id,
                phone,
                intent: if p.stop { Intent::Stop } else { Intent::Start },
                source: OptOutSource::CloudApi,
                at: p.timestamp.unwrap_or(c.received_at),
            };
            changes.push((change, c.session_id));
        }
    }
    let mut settings = HashMap::new();
    if !texts.is_empty() {
        let mut tenants: Vec<Uuid> = texts.iter().map(|t| t.0).collect();
        tenants.sort();
        tenants.dedup();
        settings = herald_optouts::settings::load_many(&mut *tx, &tenants).await?;
        let mut matchers: HashMap<Uuid, Matcher> = HashMap::new();
        for (tenant, session, phone, text, at) in texts {
            let matcher = matchers
                .entry(tenant)
                .or_insert_with(|| settings.get(&tenant).cloned().unwrap_or_default().matcher());
            if let Some(intent) = matcher.intent(text) {
                let change = Change {
                    tenant_id: tenant,
                    phone,
                    intent,
                    source: OptOutSource::Keyword,
                    at,
                };
                changes.push((change, session));
            }
        }
    }
    if changes.is_empty() {
        return Ok(vec![]);
    }
    // one phone's changes in the batch apply in order: keep the last of each phone
    let mut last: HashMap<(Uuid, Phone), usize> = HashMap::new();
    for (i, (c, _)) in changes.iter().enumerate() {
        last.insert((c.tenant_id, c.phone.clone()), i);
    }
    let changes: Vec<(Change, Uuid)> = changes
        .into_iter()
        .enumerate()
        .filter(|(i, (c, _))| last.get(&(c.tenant_id, c.phone.clone())) == Some(i))
        .map(|(_, c)| c)
        .collect();
    let just: Vec<Change> = changes.iter().map(|(c, _)| c.clone()).collect();
    let outcomes = record::apply(&mut *tx, &just).await?;
    let mut confirmations = Vec::new();
    for ((change, session), outcome) in changes.into_iter().zip(outcomes) {
        match outcome {
            Outcome::Applied { changed: true } => {
                tracing::info!(tenant = %change.tenant_id, source = change.source.as_str(),
                    stop = change.intent == Intent::Stop, "contact opted out or back in");
                metrics::counter!("herald_opt_outs_total", "source" => change.source.as_str(),
                    "intent" => if change.intent == Intent::Stop { "stop" } else { "start" })
                .increment(1);
                let text = settings
                    .get(&change.tenant_id)
                    .and_then(|s| s.confirmation_text.clone());
                if let (Intent::Stop, OptOutSource::Keyword, Some(text)) =
                    (change.intent, change.source, text)
                {
                    confirmations.push(Confirmation {
                        tenant_id: change.tenant_id,
                        session_id: session,
                        phone: change.phone,
                        text,
                    });
                }
            }
            Outcome::Applied { changed: false } => {}
            // a start from a phone that is no contact: nothing to opt in from
            Outcome::Refused(reason) => tracing::debug!(%reason, "opt-in not applied"),
        }
    }
    Ok(confirmations)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(chat: &str, text: &str, from_me: bool) -> InboundMessage {
        InboundMessage {
            id: "M1".into(),
            chat: chat.into(),
            sender: chat.into(),
            from_me,
            is_group: chat.ends_with("@g.us"),
            push_name: None,
            text: Some(text.into()),
            kind: "text".into(),
            timestamp: None,
        }
    }

    #[test]
    fn only_short_direct_messages_from_others_are_candidates() {
        let peer = "6281234567890@s.whatsapp.net";
        assert!(candidate(&message(peer, "STOP", false)).is_some());
        assert!(candidate(&message(peer, "STOP", true)).is_none());
        assert!(candidate(&message("120363025246125888@g.us", "STOP", false)).is_none());
        assert!(candidate(&message("93849@lid", "STOP", false)).is_none());
        assert!(candidate(&message(peer, &"x".repeat(10_000), false)).is_none());
    }
}
