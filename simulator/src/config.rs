//! What a simulator starts with: its fault knobs, admin token, seed and receipts.

use crate::receipts::ReceiptSettings;

/// Settings for a simulator. `Default` is a fault-free, unauthenticated simulator.
#[derive(Debug, Clone, Default)]
pub struct SimulatorConfig {
    /// Added to every send before it is answered, to model WhatsApp's round trip.
    pub latency_ms: u64,
    /// Fraction (0..=1) of sends answered 500 `error sending message: simulated failure`.
    pub error_rate: f64,
    /// Fraction (0..=1) of sends answered 429 with `Retry-After: 1`; decided before errors.
    pub rate_limit_rate: f64,
    /// When set, `/admin/*` requires `Authorization: <admin_token>`.
    pub admin_token: Option<String>,
    /// Seeds the random source (fault draws, generated ids) for reproducible runs.
    pub seed: Option<u64>,
    /// Receipts posted back to users' webhooks; off by default (see [`ReceiptSettings::on`]).
    pub receipts: ReceiptSettings,
}
