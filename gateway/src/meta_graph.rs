//! Asking Meta's Graph API whether an access token may use a Cloud API phone number id: the
//! proof Herald wants before a session stands for that number (docs/decisions/0041).
//!
//! `GET {graph}/{phone_number_id}` with `Authorization: Bearer <token>` answers 200 with the
//! number (`{"id": "<phone number id>", "display_phone_number": ...}`) only when the token's
//! business owns the number or was granted it; anything else is no proof.

use std::time::Duration;

/// Longest Graph answer read: the number's fields are a few hundred bytes.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// What Meta said about the token and the number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// 200 with the same `id`: the token may use the number.
    Accepted,
    /// Meta answered but not with that number (its status and reason, never the token).
    Refused(String),
    /// Meta could not be reached or answered unreadably: no decision.
    Unavailable(String),
}

/// A client for one Graph API base URL (`HERALD_META_GRAPH_URL`).
#[derive(Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    base_url: String,
}

impl GraphClient {
    pub fn new(base_url: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            // the token goes to the Graph host only, never where a redirect points
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(GraphClient {
            http,
            base_url: base_url.trim().trim_end_matches('/').to_string(),
        })
    }

    /// Whether `access_token` may use `phone_number_id` (digits only, checked by the caller).
    #[tracing::instrument(skip_all, fields(phone_number_id = %phone_number_id))]
    pub async fn check(&self, phone_number_id: &str, access_token: &str) -> Proof {
        let url = format!("{}/{phone_number_id}", self.base_url);
        let mut response = match self.http.get(&url).bearer_auth(access_token).send().await {
            Ok(r) => r,
            Err(e) => return Proof::Unavailable(without_url(&e)),
        };
        let status = response.status();
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) if body.len() + chunk.len() <= MAX_ANSWER_BYTES => {
                    body.extend_from_slice(&chunk)
                }
                Ok(Some(_)) => return Proof::Unavailable("Meta's answer was too large".into()),
                Ok(None) => break,
                Err(e) => return Proof::Unavailable(without_url(&e)),
            }
        }
        let json: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        if status.is_server_error() {
            return Proof::Unavailable(format!("Meta answered {}", status.as_u16()));
        }
        if status != reqwest::StatusCode::OK {
            let reason = json
                .as_ref()
                .and_then(|j| j.pointer("/error/message"))
                .and_then(|m| m.as_str())
                .map(|m| {
                    m.chars()
                        .filter(|c| !c.is_control())
                        .take(200)
                        .collect::<String>()
                })
                .unwrap_or_default();
            return Proof::Refused(format!("Meta answered {}: {reason}", status.as_u16()));
        }
        match json
            .as_ref()
            .and_then(|j| j.get("id"))
            .and_then(|i| i.as_str())
        {
            Some(id) if id == phone_number_id => Proof::Accepted,
            Some(_) => Proof::Refused("Meta named another phone number id".into()),
            None => Proof::Refused("Meta's answer names no phone number id".into()),
        }
    }
}

/// A reqwest error without its URL (which holds the number, harmless, but keep answers short).
fn without_url(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "Meta did not answer in time".into()
    } else if error.is_connect() {
        "Meta could not be reached".into()
    } else {
        "Meta's answer could not be read".into()
    }
}
