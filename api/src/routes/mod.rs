//! HTTP routes. Each module holds one resource's endpoints and its request/response shapes.

pub mod accounts;
pub mod admin;
pub mod campaign_patch;
pub mod campaigns;
pub mod chats;
pub mod contacts;
pub mod dashboard;
pub mod events;
pub mod health;
pub mod messages;
pub mod meta;
pub mod openapi;
pub mod opt_outs;
pub mod password;
pub mod reply;
pub mod safe_sending;
pub mod sessions;
pub mod settings;
pub mod templates;
pub mod webhook_endpoints;
pub mod webhooks;

use salvo::oapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme};
use salvo::oapi::{OpenApi, SecurityScheme};
use salvo::prelude::*;
use uuid::Uuid;

use crate::auth::require_caller;
use crate::error::ApiError;

/// Ids in paths: anything that is not a UUID cannot name an object, so it is simply not found.
pub fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound)
}

/// `?limit=` (default 50, 1..=500).
pub fn parse_limit(raw: Option<&str>) -> Result<i64, ApiError> {
    match raw {
        None => Ok(50),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if (1..=500).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(
                "invalid_query",
                "limit must be a whole number from 1 to 500",
            )),
        },
    }
}

/// `?cursor=` of a newest-first list.
pub fn parse_time_cursor(
    raw: Option<&str>,
) -> Result<Option<(chrono::DateTime<chrono::Utc>, Uuid)>, ApiError> {
    match raw {
        None | Some("") => Ok(None),
        Some(c) => herald_projections::parse_time_cursor(c)
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request("invalid_cursor", "cursor is not one Herald gave out")
            }),
    }
}

/// A list answer: `{"items": [...], "next_cursor": ...}`.
#[derive(Debug, serde::Serialize, salvo::oapi::ToSchema)]
pub struct ListOf<T: salvo::oapi::ToSchema + 'static> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// The whole router: public routes, tenant routes behind authentication, the OpenAPI document,
/// the interactive page at `/docs`, and the dashboard for every other `GET`.
pub fn router() -> Router {
    let router = api_router();
    let doc = openapi(&router);
    router
        .push(doc.into_router("/api/v1/openapi.json"))
        .push(SwaggerUi::new("/api/v1/openapi.json").into_router("docs"))
        // last: only what no route above took
        .push(Router::with_path("{**rest}").get(dashboard::serve))
}

/// The OpenAPI document `GET /api/v1/openapi.json` serves, as pretty JSON (`herald openapi`,
/// and the dashboard's generated client: `web/openapi.json`).
pub fn openapi_json() -> anyhow::Result<String> {
    Ok(openapi(&api_router()).to_pretty_json()?)
}

fn openapi(router: &Router) -> OpenApi {
    let doc = OpenApi::new("Herald", env!("CARGO_PKG_VERSION"))
        .add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer).bearer_format("JWT")),
        )
        .add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        )
        .add_security_scheme(
            "stream_token",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new("access_token"))),
        )
        .merge_router(router);
    openapi::complete(doc)
}

/// Health, metrics and `/api/v1`: everything the OpenAPI document describes.
fn api_router() -> Router {
    let tenant = Router::new()
        .hoop(require_caller)
        .push(
            Router::with_path("me")
                .get(accounts::me)
                .push(Router::with_path("password").post(password::change_password)),
        )
        .push(
            Router::with_path("api-keys")
                .get(accounts::list_api_keys)
                .post(accounts::create_api_key)
                .push(Router::with_path("{id}").delete(accounts::delete_api_key)),
        )
        .push(
            Router::with_path("sessions")
                .get(sessions::list)
                .post(sessions::create)
                .push(
                    Router::with_path("{id}")
                        .get(sessions::get)
                        .patch(sessions::update)
                        .delete(sessions::delete)
                        .push(Router::with_path("connect").post(sessions::connect))
                        .push(Router::with_path("qr").get(sessions::qr))
                        .push(Router::with_path("status").get(sessions::live_status))
                        .push(Router::with_path("logout").post(sessions::logout))
                        // WuzAPI features Herald has no endpoint for, with the session's token
                        .push(
                            Router::with_path("gateway/{**path}")
                                .get(sessions::forward_get)
                                .post(sessions::forward)
                                .put(sessions::forward)
                                .delete(sessions::forward),
                        ),
                ),
        )
        .push(
            Router::with_path("templates")
                .get(templates::list)
                .post(templates::create)
                .push(
                    Router::with_path("{id}")
                        .get(templates::get)
                        .patch(templates::update)
                        .delete(templates::delete),
                ),
        )
        .push(
            Router::with_path("campaigns")
                .get(campaigns::list)
                .post(campaigns::create)
                .push(
                    Router::with_path("{id}")
                        .get(campaigns::get)
                        .patch(campaign_patch::update_campaign)
                        .push(Router::with_path("recipients").get(campaigns::recipients))
                        .push(Router::with_path("recipients.csv").get(campaigns::recipients_csv))
                        .push(Router::with_path("pause").post(campaigns::pause))
                        .push(Router::with_path("resume").post(campaigns::resume))
                        .push(Router::with_path("cancel").post(campaigns::cancel))
                        .push(Router::with_path("occurrences").get(campaigns::occurrences)),
                ),
        )
        .push(
            Router::with_path("contacts")
                .get(contacts::list)
                .post(contacts::upsert)
                .push(Router::with_path("import").post(contacts::import))
                .push(Router::with_path("sync").post(contacts::sync))
                .push(
                    Router::with_path("{phone}")
                        .get(contacts::get)
                        .patch(contacts::patch)
                        .delete(contacts::delete)
                        .push(Router::with_path("opt-out").post(opt_outs::opt_out))
                        .push(Router::with_path("opt-in").post(opt_outs::opt_in)),
                ),
        )
        .push(
            Router::with_path("settings")
                .push(
                    Router::with_path("opt-out")
                        .get(settings::get_opt_out)
                        .put(settings::put_opt_out),
                )
                .push(
                    Router::with_path("sending")
                        .get(settings::get_sending)
                        .put(settings::put_sending),
                ),
        )
        .push(
            Router::with_path("chats").get(chats::list).push(
                Router::with_path("{id}")
                    .get(chats::get)
                    .push(Router::with_path("messages").get(chats::messages))
                    .push(Router::with_path("read").post(chats::mark_read)),
            ),
        )
        .push(
            Router::with_path("messages")
                .post(messages::send)
                .push(Router::with_path("{id}").get(messages::get)),
        )
        .push(
            Router::with_path("webhook-endpoints")
                .get(webhook_endpoints::list)
                .post(webhook_endpoints::create)
                .push(
                    Router::with_path("{id}")
                        .get(webhook_endpoints::get)
                        .patch(webhook_endpoints::update)
                        .delete(webhook_endpoints::delete)
                        .push(
                            Router::with_path("rotate-secret")
                                .post(webhook_endpoints::rotate_secret),
                        )
                        .push(Router::with_path("test").post(webhook_endpoints::test))
                        .push(Router::with_path("deliveries").get(webhook_endpoints::deliveries))
                        .push(Router::with_path("replay").post(webhook_endpoints::replay)),
                ),
        )
        .push(Router::with_path("events/token").post(events::create_token));
    // the operator's endpoints: X-Admin-Token, not a tenant's credentials
    let admin = Router::with_path("admin")
        .hoop(admin::require_admin)
        .push(
            Router::with_path("tenants")
                .get(admin::list_tenants)
                .push(Router::with_path("{id}/plan").put(admin::set_plan)),
        )
        .push(Router::with_path("users/{id}").delete(admin::delete_user))
        .push(
            Router::with_path("sessions/{id}/meta-phone-number-id")
                .put(admin::set_meta_phone_number_id),
        );
    let api = Router::with_path("api/v1")
        // text Postgres cannot store never gets past the URL (docs/decisions/0037)
        .hoop(crate::url_text::refuse_nul)
        .push(Router::with_path("auth/register").post(accounts::register))
        .push(Router::with_path("auth/login").post(accounts::login))
        // the gateway calls this one: authenticated by the session's HMAC key, not a JWT
        .push(Router::with_path("webhooks/wuzapi/{session_id}").post(webhooks::wuzapi))
        // WhatsApp Cloud API: Meta's handshake and its notifications, signed with the app secret
        .push(
            Router::with_path("webhooks/meta")
                .get(meta::verify)
                .post(meta::notify),
        )
        // one Cloud API session's own callback: its verify token and app secret
        .push(
            Router::with_path("webhooks/meta/{session_id}")
                .get(meta::verify_session)
                .post(meta::notify_session),
        )
        .push(admin)
        // SSE: headers, or `?access_token=` for browsers' EventSource (authenticated inside)
        .push(Router::with_path("events").get(events::stream_events))
        .push(tenant);
    let mut router = Router::new();
    for probe in health::routes() {
        router = router.push(probe);
    }
    router.push(api)
}
