//! [`WuzapiClient`]'s half of the gateway pass-through (see `crate::passthrough`): one tenant
//! request forwarded under the user's token, WuzAPI's answer read up to a bound.

use std::time::Duration;

use reqwest::header::CONTENT_TYPE;

use super::{secret_header, transport_error, WuzapiClient};
use crate::passthrough::{ForwardRequest, Forwarded, MAX_ANSWER_BYTES};
use crate::GatewayError;

impl WuzapiClient {
    /// Forwards one request under the user `token`. Transport failures and an answer over
    /// [`MAX_ANSWER_BYTES`] are errors; any status WuzAPI gave is an answer.
    #[tracing::instrument(skip_all, fields(method = %forward.method, path = %forward.path))]
    pub(crate) async fn forward_request(
        &self,
        token: &str,
        forward: ForwardRequest,
    ) -> Result<Forwarded, GatewayError> {
        let ForwardRequest {
            method,
            path,
            query,
            content_type,
            body,
        } = forward;
        let mut url = format!("{}{path}", self.base_url());
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query);
        }
        let mut request = self
            .http()
            .request(method, url)
            .timeout(Duration::from_secs(30))
            .header("Token", secret_header(token)?);
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        if !body.is_empty() {
            request = request.body(body);
        }
        let mut response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(GatewayError::permanent(format!(
                    "the gateway's answer is larger than {} MiB",
                    MAX_ANSWER_BYTES / (1024 * 1024)
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Forwarded {
            status,
            content_type,
            body,
        })
    }
}
