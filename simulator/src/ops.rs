//! The operator endpoints under `/sim/`: stats, accepted messages, fault and receipt settings,
//! receipt counters and reset. Not part of WuzAPI and not authenticated: the simulator is a test
//! tool.

use salvo::http::StatusCode;
use salvo::{Request, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::receipts::ReceiptSettings;
use super::reply;
use super::state::{FaultSettings, Sim};
use herald_gateway::webhook::Encoding;

/// `/sim/messages` answers this many records unless asked otherwise.
const DEFAULT_MESSAGE_LIMIT: usize = 1_000;
/// Keeps one answer (and the copy made under the ledger lock) bounded.
const MAX_MESSAGE_LIMIT: usize = 100_000;

/// The operator routes this module answers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum OpsOp {
    Stats,
    Messages,
    GetConfig,
    PutConfig,
    Receipts,
    Reset,
    /// `PUT /sim/users/{token}/contacts`: what that user's `/user/contacts` answers from now on.
    SeedContacts,
}

/// A seeded contact list may be large (thousands of entries), not unbounded.
const MAX_SEED_BYTES: usize = 32 * 1024 * 1024;

/// `PUT /sim/config`: only the given knobs change. Unknown keys are refused so a typo does not
/// silently leave a fault switched off.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigChange {
    latency_ms: Option<u64>,
    error_rate: Option<f64>,
    rate_limit_rate: Option<f64>,
    receipts: Option<bool>,
    receipt_delivered_after_ms: Option<u64>,
    receipt_read_after_ms: Option<u64>,
    receipt_encoding: Option<Encoding>,
    receipt_duplicates: Option<bool>,
    receipt_read_first: Option<bool>,
}

/// Every knob, flat, as `GET` and `PUT /sim/config` answer.
#[derive(Serialize)]
struct ConfigView {
    #[serde(flatten)]
    faults: FaultSettings,
    receipts: bool,
    receipt_delivered_after_ms: u64,
    receipt_read_after_ms: u64,
    receipt_encoding: Encoding,
    receipt_duplicates: bool,
    receipt_read_first: bool,
}

fn view(faults: FaultSettings, receipts: ReceiptSettings) -> ConfigView {
    ConfigView {
        faults,
        receipts: receipts.enabled,
        receipt_delivered_after_ms: receipts.delivered_after_ms,
        receipt_read_after_ms: receipts.read_after_ms,
        receipt_encoding: receipts.encoding,
        receipt_duplicates: receipts.duplicates,
        receipt_read_first: receipts.read_first,
    }
}

pub(crate) async fn handle(sim: &Sim, req: &mut Request, res: &mut Response, op: OpsOp) {
    match op {
        OpsOp::Stats => reply::json(res, StatusCode::OK, &sim.ledger.stats()),
        OpsOp::Messages => messages(sim, req, res),
        OpsOp::GetConfig => {
            let config = view(sim.faults.get(), sim.receipts.get());
            reply::json(res, StatusCode::OK, &config)
        }
        OpsOp::PutConfig => put_config(sim, req, res).await,
        OpsOp::Receipts => reply::json(res, StatusCode::OK, &sim.receipts.stats()),
        OpsOp::SeedContacts => seed_contacts(sim, req, res).await,
        OpsOp::Reset => {
            sim.ledger.reset();
            sim.receipts.reset_stats();
            reply::json(res, StatusCode::OK, &sim.ledger.stats());
        }
    }
}

fn messages(sim: &Sim, req: &Request, res: &mut Response) {
    let limit = match req.queries().get("limit") {
        None => DEFAULT_MESSAGE_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(limit) => limit.min(MAX_MESSAGE_LIMIT),
            Err(_) => {
                return reply::error(res, StatusCode::BAD_REQUEST, "limit must be a number");
            }
        },
    };
    let filter = |key: &str| {
        req.queries()
            .get(key)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    };
    let phone = filter("phone").map(|phone| phone.trim_start_matches('+'));
    let items = sim.ledger.messages(phone, filter("token"), limit);
    reply::json(res, StatusCode::OK, &json!({ "items": items }));
}

async fn put_config(sim: &Sim, req: &mut Request, res: &mut Response) {
    let change = match req.payload().await {
        Ok(bytes) => serde_json::from_slice::<ConfigChange>(bytes).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let change = match change {
        Ok(change) => change,
        Err(reason) => {
            let message = format!("could not decode Payload: {reason}");
            return reply::error(res, StatusCode::BAD_REQUEST, &message);
        }
    };
    let current = sim.faults.get();
    let next = FaultSettings {
        latency_ms: change.latency_ms.unwrap_or(current.latency_ms),
        error_rate: change.error_rate.unwrap_or(current.error_rate),
        rate_limit_rate: change.rate_limit_rate.unwrap_or(current.rate_limit_rate),
    };
    let current_receipts = sim.receipts.get();
    let next_receipts = ReceiptSettings {
        enabled: change.receipts.unwrap_or(current_receipts.enabled),
        delivered_after_ms: change
            .receipt_delivered_after_ms
            .unwrap_or(current_receipts.delivered_after_ms),
        read_after_ms: change
            .receipt_read_after_ms
            .unwrap_or(current_receipts.read_after_ms),
        encoding: change.receipt_encoding.unwrap_or(current_receipts.encoding),
        duplicates: change
            .receipt_duplicates
            .unwrap_or(current_receipts.duplicates),
        read_first: change
            .receipt_read_first
            .unwrap_or(current_receipts.read_first),
    };
    if let Err(reason) = next.validate().and(next_receipts.validate()) {
        return reply::error(res, StatusCode::BAD_REQUEST, &reason);
    }
    sim.faults.set(next);
    sim.receipts.set(next_receipts);
    tracing::info!(
        latency_ms = next.latency_ms,
        error_rate = next.error_rate,
        rate_limit_rate = next.rate_limit_rate,
        receipts = next_receipts.enabled,
        "simulator settings changed"
    );
    reply::json(res, StatusCode::OK, &view(next, next_receipts));
}

async fn seed_contacts(sim: &Sim, req: &mut Request, res: &mut Response) {
    let Some(token) = req
        .param::<String>("token")
        .filter(|token| !token.trim().is_empty())
    else {
        return reply::error(res, StatusCode::BAD_REQUEST, "missing user token");
    };
    let value = match req.payload_with_max_size(MAX_SEED_BYTES).await {
        Ok(bytes) => serde_json::from_slice::<serde_json::Value>(bytes).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match value {
        Ok(value) => {
            let count = value.as_object().map_or(0, serde_json::Map::len);
            sim.users
                .with(token.trim(), |user| user.contacts = Some(value));
            reply::json(res, StatusCode::OK, &json!({ "contacts": count }));
        }
        Err(reason) => {
            let message = format!("could not decode Payload: {reason}");
            reply::error(res, StatusCode::BAD_REQUEST, &message)
        }
    }
}
