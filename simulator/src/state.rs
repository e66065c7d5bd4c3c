//! The simulator's shared state: fault settings readable without a lock, a lock-free seedable
//! random source, the users, and the ledger of accepted sends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::config::SimulatorConfig;
use super::ledger::Ledger;
use super::receipts::Receipts;
use super::users::Users;

/// Everything the handlers share, behind one `Arc`.
pub(crate) struct Sim {
    pub(crate) faults: Faults,
    pub(crate) rng: Rng,
    pub(crate) users: Users,
    pub(crate) ledger: Ledger,
    /// Receipts posted back to users' webhooks.
    pub(crate) receipts: Receipts,
    /// When set, `/admin/*` requires `Authorization: <admin_token>`.
    pub(crate) admin_token: Option<String>,
    /// The Cloud API numbers and what was sent through them.
    pub(crate) cloud: crate::cloud_numbers::CloudNumbers,
}

impl Sim {
    pub(crate) fn new(config: &SimulatorConfig) -> anyhow::Result<Self> {
        Ok(Self {
            faults: Faults::new(FaultSettings {
                latency_ms: config.latency_ms,
                error_rate: config.error_rate,
                rate_limit_rate: config.rate_limit_rate,
            }),
            rng: Rng::new(config.seed.unwrap_or_else(rand::random)),
            users: Users::default(),
            ledger: Ledger::default(),
            receipts: Receipts::new(config.receipts)?,
            admin_token: config.admin_token.clone().filter(|t| !t.is_empty()),
            cloud: Default::default(),
        })
    }
}

/// The fault-injection knobs as `/sim/config` shows and takes them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct FaultSettings {
    pub(crate) latency_ms: u64,
    pub(crate) error_rate: f64,
    pub(crate) rate_limit_rate: f64,
}

impl FaultSettings {
    /// Rates are fractions of sends; anything outside 0..=1 is a typo, not a wish.
    pub(crate) fn validate(&self) -> Result<(), String> {
        for (name, rate) in [
            ("error_rate", self.error_rate),
            ("rate_limit_rate", self.rate_limit_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be between 0 and 1, got {rate}"));
            }
        }
        Ok(())
    }
}

/// Fault settings in atomics: every send reads them, operators change them rarely, so a lock
/// would only add contention. Rates are stored as `f64` bits.
pub(crate) struct Faults {
    latency_ms: AtomicU64,
    error_rate: AtomicU64,
    rate_limit_rate: AtomicU64,
}

impl Faults {
    fn new(settings: FaultSettings) -> Self {
        let faults = Self {
            latency_ms: AtomicU64::new(0),
            error_rate: AtomicU64::new(0),
            rate_limit_rate: AtomicU64::new(0),
        };
        faults.set(settings);
        faults
    }

    pub(crate) fn get(&self) -> FaultSettings {
        FaultSettings {
            latency_ms: self.latency_ms.load(Ordering::Relaxed),
            error_rate: f64::from_bits(self.error_rate.load(Ordering::Relaxed)),
            rate_limit_rate: f64::from_bits(self.rate_limit_rate.load(Ordering::Relaxed)),
        }
    }

    pub(crate) fn set(&self, settings: FaultSettings) {
        self.latency_ms
            .store(settings.latency_ms, Ordering::Relaxed);
        self.error_rate
            .store(settings.error_rate.to_bits(), Ordering::Relaxed);
        self.rate_limit_rate
            .store(settings.rate_limit_rate.to_bits(), Ordering::Relaxed);
    }

    pub(crate) fn latency(&self) -> Duration {
        Duration::from_millis(self.latency_ms.load(Ordering::Relaxed))
    }
}

/// SplitMix64 over an atomic counter: lock-free, and with a seed the sequence of draws is
/// reproducible (which request gets which draw still depends on arrival order).
pub(crate) struct Rng {
    state: AtomicU64,
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    pub(crate) fn next_u64(&self) -> u64 {
        let mut z = self
            .state
            .fetch_add(GOLDEN_GAMMA, Ordering::Relaxed)
            .wrapping_add(GOLDEN_GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`, so a rate of 1.0 always hits and 0.0 never does.
    fn next_f64(&self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1_u64 << 53) as f64)
    }

    /// Whether an event with probability `rate` happens. Draws nothing when `rate` is 0, so a
    /// seeded run without faults keeps its id sequence.
    pub(crate) fn hits(&self, rate: f64) -> bool {
        rate > 0.0 && self.next_f64() < rate
    }

    /// A WhatsApp-style message id (whatsmeow's `3EB0` prefix + uppercase hex), for sends that
    /// carry no `Id`.
    pub(crate) fn message_id(&self) -> String {
        format!("3EB0{:016X}", self.next_u64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_rng_is_reproducible_and_rates_are_exact_at_the_ends() {
        let (a, b) = (Rng::new(7), Rng::new(7));
        let first: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let second: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(first, second);
        assert!((0..1000).all(|_| a.hits(1.0)));
        assert!((0..1000).all(|_| !a.hits(0.0)));
        let hits = (0..10_000).filter(|_| a.hits(0.25)).count();
        assert!((2_000..3_000).contains(&hits), "{hits}");
        let id = a.message_id();
        assert_eq!(id.len(), 20);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
    }

    #[test]
    fn rates_outside_zero_to_one_are_rejected() {
        let mut settings = FaultSettings {
            latency_ms: 0,
            error_rate: 0.5,
            rate_limit_rate: 1.0,
        };
        assert!(settings.validate().is_ok());
        settings.error_rate = 1.5;
        assert!(settings.validate().is_err());
        settings.error_rate = f64::NAN;
        assert!(settings.validate().is_err());
    }
}
