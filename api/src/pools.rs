//! The bounded pools a request can reach, shared fairly (decision 0043, docs/running.md#fair-sharing):
//! image downloads and decodes (per tenant), password hashing (per client address: login and
//! registration have no tenant yet), event streams and contact imports (per tenant). All are
//! [`FairPool`]s; this module holds their settings and turns a refusal into Herald's answer:
//! - waiting work that finds no room within the wait: 503 `busy` with `Retry-After`;
//! - a tenant over its own cap of streams or imports: 429 (`too_many_streams`,
//!   `import_in_progress`) with `Retry-After`, because it is the caller's own use, not the
//!   server's load, and closing a stream or waiting for an import is what frees the slot.
//!
//! Every limit holds per process: with several API instances, per instance.

use std::net::IpAddr;
use std::time::Duration;

use herald_domain::fair_pool::{FairPool, Limits, Reason, Refusal};
use herald_media::{MediaLimits, MediaPools};
use salvo::Request;
use uuid::Uuid;

use crate::error::ApiError;

/// Requests of one address that may wait for a password hash; more are refused at once.
const HASHING_WAITING_PER_ADDRESS: usize = 32;
/// What a refused stream or import is told to wait.
const STREAM_RETRY_AFTER: Duration = Duration::from_secs(5);
const IMPORT_RETRY_AFTER: Duration = Duration::from_secs(10);

/// The pools' sizes (`HERALD_IMAGE_*`, `HERALD_PASSWORD_HASHERS`, `HERALD_POOL_WAIT_MS`,
/// `HERALD_SSE_STREAMS*`, `HERALD_IMPORTS*`).
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub image_downloads: usize,
    pub image_downloads_per_tenant: usize,
    pub image_decodes: usize,
    /// Password hashes computed at once (each takes a core and 19 MiB); default: the cores.
    pub password_hashers: usize,
    /// Longest wait for an image download or decode, or a password hash.
    pub wait: Duration,
    pub sse_streams: usize,
    pub sse_streams_per_tenant: usize,
    pub imports: usize,
    pub imports_per_tenant: usize,
}

impl Default for PoolSettings {
    fn default() -> Self {
        let media = MediaLimits::default();
        PoolSettings {
            image_downloads: media.downloads,
            image_downloads_per_tenant: media.downloads_per_tenant,
            image_decodes: media.decodes,
            password_hashers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            wait: media.wait,
            sse_streams: 10_000,
            sse_streams_per_tenant: 20,
            imports: 8,
            imports_per_tenant: 2,
        }
    }
}

impl PoolSettings {
    /// Reads the variables through `number(name, default)`; unset ones keep the default.
    pub fn from_env(number: &dyn Fn(&str, u64) -> anyhow::Result<u64>) -> anyhow::Result<Self> {
        let d = PoolSettings::default();
        let count = |name: &str, default: usize, max: u64| -> anyhow::Result<usize> {
            Ok(number(name, default as u64)?.clamp(1, max) as usize)
        };
        Ok(PoolSettings {
            image_downloads: count("HERALD_IMAGE_DOWNLOADS", d.image_downloads, 256)?,
            image_downloads_per_tenant: count(
                "HERALD_IMAGE_DOWNLOADS_PER_TENANT",
                d.image_downloads_per_tenant,
                256,
            )?,
            image_decodes: count("HERALD_IMAGE_DECODES", d.image_decodes, 64)?,
            password_hashers: count("HERALD_PASSWORD_HASHERS", d.password_hashers, 256)?,
            wait: Duration::from_millis(
                number("HERALD_POOL_WAIT_MS", d.wait.as_millis() as u64)?.clamp(0, 60_000),
            ),
            sse_streams: count("HERALD_SSE_STREAMS", d.sse_streams, 1_000_000)?,
            sse_streams_per_tenant: count(
                "HERALD_SSE_STREAMS_PER_TENANT",
                d.sse_streams_per_tenant,
                1_000_000,
            )?,
            imports: count("HERALD_IMPORTS", d.imports, 1_024)?,
            imports_per_tenant: count("HERALD_IMPORTS_PER_TENANT", d.imports_per_tenant, 1_024)?,
        })
    }
}

/// The pools of one process's API.
#[derive(Clone)]
pub struct Pools {
    pub media: MediaPools,
    /// Keyed by [`client_key`].
    pub hashing: FairPool<IpAddr>,
    pub streams: FairPool<Uuid>,
    pub imports: FairPool<Uuid>,
}

impl Pools {
    pub fn new(settings: &PoolSettings) -> Self {
        let never_wait = |permits, per_key, retry_after| Limits {
            permits,
            per_key,
            waiting_per_key: 0,
            wait: Duration::ZERO,
            retry_after,
        };
        Pools {
            media: MediaPools::new(MediaLimits {
                downloads: settings.image_downloads,
                downloads_per_tenant: settings.image_downloads_per_tenant,
                decodes: settings.image_decodes,
                wait: settings.wait,
            }),
            hashing: FairPool::new(
                "password_hashing",
                Limits {
                    permits: settings.password_hashers,
                    per_key: 1,
                    waiting_per_key: HASHING_WAITING_PER_ADDRESS,
                    wait: settings.wait,
                    retry_after: settings.wait,
                },
            ),
            streams: FairPool::new(
                "event_streams",
                never_wait(
                    settings.sse_streams,
                    settings.sse_streams_per_tenant,
                    STREAM_RETRY_AFTER,
                ),
            ),
            imports: FairPool::new(
                "contact_imports",
                never_wait(
                    settings.imports,
                    settings.imports_per_tenant,
                    IMPORT_RETRY_AFTER,
                ),
            ),
        }
    }
}

/// 503 `busy`: the process's share of this work was taken for longer than the wait.
pub fn busy(what: &str, refusal: Refusal) -> ApiError {
    ApiError::Busy {
        message: format!("Herald is busy with {what} right now; try again shortly"),
        retry_after_secs: refusal.retry_after_secs,
    }
}

/// A tenant's own cap (429 with `code`) or the process's (503 `busy`).
pub fn over_cap(code: &'static str, message: String, what: &str, refusal: Refusal) -> ApiError {
    match refusal.reason {
        Reason::KeyAtCap => ApiError::TooManyRequests {
            code,
            message,
            details: None,
            retry_after_secs: refusal.retry_after_secs,
        },
        Reason::Busy => busy(what, refusal),
    }
}

/// Whose share a request without a tenant uses: the client's address as the throttles see it
/// ([`herald_accounts::throttle::client_ip`]: through the operator's trusted proxies, an IPv6 one by its
/// /64).
pub fn client_key(req: &Request, trusted: &[IpAddr]) -> IpAddr {
    crate::throttle::client_ip_of(req, trusted)
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_read_and_clamped() {
        let read = |name: &str, default: u64| -> anyhow::Result<u64> {
            Ok(match name {
                "HERALD_PASSWORD_HASHERS" => 0,
                "HERALD_SSE_STREAMS_PER_TENANT" => 3,
                "HERALD_POOL_WAIT_MS" => 250,
                _ => default,
            })
        };
        let s = PoolSettings::from_env(&read).expect("settings");
        assert_eq!(s.password_hashers, 1, "at least one hasher");
        assert_eq!(s.sse_streams_per_tenant, 3);
        assert_eq!(s.wait, Duration::from_millis(250));
        assert_eq!((s.imports, s.imports_per_tenant), (8, 2));
        assert_eq!((s.image_downloads, s.image_downloads_per_tenant), (4, 2));
    }

    #[test]
    fn a_tenants_own_cap_is_429_and_the_process_being_full_is_503() {
        let refusal = |reason| Refusal {
            reason,
            retry_after_secs: 7,
        };
        let own = over_cap(
            "too_many_streams",
            "x".into(),
            "streams",
            refusal(Reason::KeyAtCap),
        );
        assert_eq!(own.status(), salvo::http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(own.body().error.code, "too_many_streams");
        let full = over_cap(
            "too_many_streams",
            "x".into(),
            "streams",
            refusal(Reason::Busy),
        );
        assert_eq!(full.status(), salvo::http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(full.body().error.code, "busy");
        assert_eq!(
            full.body().error.details.expect("details")["retry_after_secs"],
            7
        );
    }
}
