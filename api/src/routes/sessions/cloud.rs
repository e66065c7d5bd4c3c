//! Sessions with `provider: "cloud_api"`: a WhatsApp Cloud API number linked by its phone number
//! id, access token and app secret (docs/cloud-api.md). Nothing is set up on WuzAPI: Meta's Graph
//! API is asked whether the token may use the number, and the credentials are stored like WuzAPI
//! tokens (never shown back). Each such session has its own callback,
//! `/api/v1/webhooks/meta/{session_id}`, with a `verify_token` Herald generates.

use std::collections::HashMap;

use herald_gateway::meta_graph::Proof;
use herald_scheduler::pacing::Pacing;
use salvo::oapi::ToSchema;
use serde::Deserialize;
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// Meta's throughput per number (80 messages a second) as an interval between two sends: 12 or
/// 13 ms, 12.5 ms on average. What a Cloud API session paces at unless it says otherwise.
pub const CLOUD_PACING: Pacing = Pacing {
    min_interval_ms: 12,
    max_interval_ms: 13,
};

/// `"provider"`: which gateway sends a session's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Wuzapi,
    CloudApi,
}

impl Provider {
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        match raw.map(str::trim) {
            None | Some("wuzapi") => Ok(Provider::Wuzapi),
            Some("cloud_api") => Ok(Provider::CloudApi),
            Some(_) => Err(ApiError::validation(
                "provider",
                "must be `wuzapi` or `cloud_api`",
            )),
        }
    }
}

/// `"cloud_api"`: the number at Meta. The access token and app secret are never shown back.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloudApiBody {
    /// The number's phone number id at Meta (digits).
    phone_number_id: String,
    /// A (system user) access token that may send from the number.
    access_token: String,
    /// The Meta app's secret: Meta signs the posts to this session's callback with it.
    app_secret: String,
    /// The WhatsApp Business Account id, for reference.
    waba_id: Option<String>,
}

/// A Cloud API number's checked credentials.
pub struct CloudLink {
    pub phone_number_id: String,
    pub access_token: String,
    pub app_secret: String,
    pub waba_id: Option<String>,
}

fn secret_field(field: &str, raw: String, max: usize) -> Result<String, ApiError> {
    let value = raw.trim().to_string();
    if value.is_empty() {
        return Err(ApiError::validation(field, "is required"));
    }
    // it travels in an HTTP header (the token) or keys an HMAC (the secret): visible ASCII
    if value.len() > max || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::validation(
            field,
            format!("must be 1 to {max} visible ASCII characters"),
        ));
    }
    Ok(value)
}

impl CloudApiBody {
    pub fn parse(self) -> Result<CloudLink, ApiError> {
        let phone_number_id = self.phone_number_id.trim().to_string();
        if !herald_gateway::meta::valid_phone_number_id(&phone_number_id) {
            return Err(ApiError::validation(
                "cloud_api.phone_number_id",
                "must be the digits of a Cloud API phone number id",
            ));
        }
        let waba_id = self
            .waba_id
            .map(|w| w.trim().to_string())
            .filter(|w| !w.is_empty());
        if let Some(w) = &waba_id {
            if w.len() > 32 || !w.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ApiError::validation(
                    "cloud_api.waba_id",
                    "must be the digits of a WhatsApp Business Account id",
                ));
            }
        }
        Ok(CloudLink {
            phone_number_id,
            access_token: secret_field("cloud_api.access_token", self.access_token, 1024)?,
            app_secret: secret_field("cloud_api.app_secret", self.app_secret, 256)?,
            waba_id,
        })
    }
}

/// Meta must say the access token may use the number: 422 naming `cloud_api.access_token`
/// otherwise, 502 `gateway_unavailable` when Meta could not answer.
pub async fn prove(state: &AppState, link: &CloudLink) -> Result<(), ApiError> {
    match state
        .meta_graph
        .check(&link.phone_number_id, &link.access_token)
        .await
    {
        Proof::Accepted => Ok(()),
        Proof::Refused(reason) => Err(ApiError::validation(
            "cloud_api.access_token",
            format!("Meta does not accept this access token for this phone number id ({reason})"),
        )),
        Proof::Unavailable(reason) => Err(ApiError::GatewayUnavailable(format!(
            "Meta's Graph API could not confirm the phone number id: {reason}"
        ))),
    }
}

/// What a session shows of its provider.
#[derive(Debug, Clone)]
pub struct ProviderInfo {
    pub provider: Provider,
    /// Cloud API sessions: the token Meta's handshake on the callback must carry.
    pub verify_token: Option<String>,
}

impl ProviderInfo {
    pub fn as_str(&self) -> &'static str {
        match self.provider {
            Provider::Wuzapi => "wuzapi",
            Provider::CloudApi => "cloud_api",
        }
    }
}

/// The provider of each of these sessions (sessions without credentials are left out).
pub async fn providers(
    pool: &sqlx::PgPool,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, ProviderInfo>, ApiError> {
    let rows: Vec<(Uuid, String, Option<String>)> = sqlx::query_as(
        "SELECT session_id, provider, meta_verify_token FROM session_credentials
          WHERE session_id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, provider, verify_token)| {
            let provider = if provider == "cloud_api" {
                Provider::CloudApi
            } else {
                Provider::Wuzapi
            };
            (
                id,
                ProviderInfo {
                    provider,
                    verify_token,
                },
            )
        })
        .collect())
}

/// 409 `not_a_wuzapi_session` for what only a WuzAPI number has (pairing, the pass-through).
pub fn wuzapi_only(what: &str) -> ApiError {
    ApiError::Conflict {
        code: "not_a_wuzapi_session",
        message: format!(
            "this session sends through the WhatsApp Cloud API, which has no {what}; manage the number in the Meta app"
        ),
    }
}
