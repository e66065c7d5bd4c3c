//! Opt-outs found in the inbox (docs/safe-sending.md): an incoming direct message whose whole
//! text is one of its tenant's stop keywords opts the sender out of campaigns, a start keyword
//! opts it back in, and so do the Cloud API's marketing stops and resumes (`user_preferences`).
//!
//! Applied in the processor's batch transaction, after its chat messages: one look at the batch's
//! texts (a message too long to be a keyword is passed over by its length alone), one query for
//! the settings of the tenants that wrote a short text, then one batch through
//! `herald_optouts::record::apply`. (The tenant's confirmation text is not sent yet: the inbox
//! may not use the single-send flow, and no port for it exists; docs/safe-sending.md.)

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use herald_domain::opt_out::{Intent, Matcher, OptOutSource, MAX_MATCH_BYTES};
use herald_domain::phone::Phone;
use herald_gateway::webhook::InboundMessage;
use herald_optouts::record::{self, Change, Outcome};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::parse::{Action, Claimed};

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

/// Finds and applies the batch's opt-outs and opt-ins; returns how many changed a contact.
pub(crate) async fn apply(tx: &mut PgConnection, claimed: &[Claimed]) -> anyhow::Result<usize> {
    // (tenant, phone, text, at) of every short direct message
    let mut texts: Vec<(Uuid, Phone, &str, DateTime<Utc>)> = Vec::new();
    let mut changes: Vec<Change> = Vec::new();
    for c in claimed {
        // a post of a number no tenant holds any more names no tenant: nothing to opt out of
        let Some(tenant_id) = c.tenant_id else {
            continue;
        };
        let (messages, preferences) = match &c.action {
            Action::Message(m) => (std::slice::from_ref(m), &[][..]),
            Action::Meta(v) => (&v.messages[..], &v.preferences[..]),
            _ => continue,
        };
        for m in messages {
            if let Some((phone, text)) = candidate(m) {
                let at = m.timestamp.unwrap_or(c.received_at);
                texts.push((tenant_id, phone, text, at));
            }
        }
        for p in preferences {
            let Ok(phone) = Phone::from_normalized(&p.wa_id) else {
                continue;
            };
            let change = Change {
                tenant_id,
                phone,
                intent: if p.stop { Intent::Stop } else { Intent::Start },
                source: OptOutSource::CloudApi,
                at: p.timestamp.unwrap_or(c.received_at),
            };
            changes.push(change);
        }
    }
    if !texts.is_empty() {
        let mut tenants: Vec<Uuid> = texts.iter().map(|t| t.0).collect();
        tenants.sort();
        tenants.dedup();
        let settings = herald_optouts::settings::load_many(&mut *tx, &tenants).await?;
        let mut matchers: HashMap<Uuid, Matcher> = HashMap::new();
        for (tenant, phone, text, at) in texts {
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
                changes.push(change);
            }
        }
    }
    if changes.is_empty() {
        return Ok(0);
    }
    // one phone's changes in the batch apply in order: keep the last of each phone
    let mut last: HashMap<(Uuid, Phone), usize> = HashMap::new();
    for (i, c) in changes.iter().enumerate() {
        last.insert((c.tenant_id, c.phone.clone()), i);
    }
    let changes: Vec<Change> = changes
        .into_iter()
        .enumerate()
        .filter(|(i, c)| last.get(&(c.tenant_id, c.phone.clone())) == Some(i))
        .map(|(_, c)| c)
        .collect();
    let outcomes = record::apply(&mut *tx, &changes).await?;
    let mut applied = 0;
    for (change, outcome) in changes.into_iter().zip(outcomes) {
        match outcome {
            Outcome::Applied { changed: true } => {
                tracing::info!(tenant = %change.tenant_id, source = change.source.as_str(),
                    stop = change.intent == Intent::Stop, "contact opted out or back in");
                metrics::counter!("herald_opt_outs_total", "source" => change.source.as_str(),
                    "intent" => if change.intent == Intent::Stop { "stop" } else { "start" })
                .increment(1);
                applied += 1;
            }
            Outcome::Applied { changed: false } => {}
            // a start from a phone that is no contact: nothing to opt in from
            Outcome::Refused(reason) => tracing::debug!(%reason, "opt-in not applied"),
        }
    }
    Ok(applied)
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
