//! Configuration from the environment (and a `.env` file), as docs/running.md lists it.

use std::fmt;

/// A value that must never reach a log: `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: Secret,
    pub nats_url: Option<String>,
    pub listen: String,
    pub public_url: Option<String>,
    pub wuzapi_url: String,
    pub wuzapi_admin_token: Option<Secret>,
    pub jwt_secret: Secret,
    /// `HERALD_ALLOW_PRIVATE_MEDIA_URLS` (tests only): image URLs may reach loopback, private,
    /// CGNAT and unique-local addresses; link-local/metadata and the like stay refused.
    pub allow_private_media_urls: bool,
    pub default_plan: String,
    pub admin_token: Option<Secret>,
    pub environment: Environment,
    /// Dispatch worker tasks in this process (`HERALD_DISPATCH_WORKERS`, default 4).
    pub dispatch_workers: usize,
    /// Database connections of this process (`HERALD_DB_POOL`, default 32).
    pub db_pool_size: u32,
    /// Recipients a dispatch worker claims at once (`HERALD_DISPATCH_BATCH`, default 500).
    pub dispatch_batch_size: i64,
    /// Gateway calls in flight per worker (`HERALD_DISPATCH_CONCURRENCY`, default 64).
    pub dispatch_concurrency: usize,
    /// Seconds a claimed recipient stays leased before it counts as in doubt and is resent with
    /// its message id (`HERALD_DISPATCH_LEASE_SECS`, default 60).
    pub dispatch_lease_secs: u64,
    /// How late a recurring campaign's occurrence may still fire after downtime
    /// (`HERALD_RECURRENCE_GRACE_SECS`, default 3600); older ones are recorded as missed.
    pub recurrence_grace_secs: u64,
    /// The WhatsApp Cloud API webhook's verify token (`HERALD_META_VERIFY_TOKEN`); unset: the
    /// `GET /api/v1/webhooks/meta` handshake answers 404.
    pub meta_verify_token: Option<Secret>,
    /// The Meta app secret that signs Cloud API notifications (`HERALD_META_APP_SECRET`);
    /// unset: `POST /api/v1/webhooks/meta` answers 404.
    pub meta_app_secret: Option<Secret>,
    /// Length of the message-quota and API-call windows (`HERALD_QUOTA_WINDOW_SECS`, default
    /// 3600: whole clock hours). Shorter only to watch a window turn in tests.
    pub quota_window_secs: u64,
    /// Seconds of silence after which an SSE stream gets a keep-alive comment line
    /// (`HERALD_SSE_KEEPALIVE_SECS`, default 15).
    pub sse_keepalive_secs: u64,
    /// Most data rows one CSV import reads (`HERALD_IMPORT_MAX_ROWS`, default 1,000,000).
    pub import_max_rows: usize,
    /// Most bytes one CSV import reads (`HERALD_IMPORT_MAX_BYTES`, default 256 MiB).
    pub import_max_bytes: u64,
    /// Seconds between runs of the unused-image collector in worker processes
    /// (`HERALD_MEDIA_GC_INTERVAL_SECS`, default 3600; decision 0024).
    pub media_gc_interval_secs: u64,
    /// Seconds an image nothing refers to is kept after its last use (`HERALD_MEDIA_GRACE_SECS`,
    /// default 86400). Never less than an hour outside tests: the grace period is what keeps an
    /// image stored by a request that has not yet written what refers to it.
    pub media_grace_secs: u64,
    /// Attempt limits of logins, registrations and number links (docs/accounts.md).
    pub throttles: herald_accounts::throttle::Throttles,
    /// Proxies whose `X-Forwarded-For` names the client (`HERALD_TRUSTED_PROXIES`, IP addresses
    /// separated by commas; default none: the peer's address is the client's).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Meta's Graph API, asked whether an access token may use a Cloud API phone number id
    /// (`HERALD_META_GRAPH_URL`, default `https://graph.facebook.com/v21.0`).
    pub meta_graph_url: String,
    /// The built dashboard (`HERALD_WEB_DIR`, default `web/dist` below the working directory);
    /// without an `index.html` there, `/` says how to build it (docs/dashboard.md).
    pub web_dir: std::path::PathBuf,
    /// Seconds a request body may send nothing before it is cut off with 408
    /// (`HERALD_BODY_IDLE_TIMEOUT_SECS`, default 30): every body, JSON, form or CSV upload.
    pub body_idle_timeout_secs: u64,
    /// The bounded pools shared fairly between tenants (decision 0043, `HERALD_IMAGE_*`,
    /// `HERALD_PASSWORD_HASHERS`, `HERALD_POOL_WAIT_MS`, `HERALD_SSE_STREAMS*`, `HERALD_IMPORTS*`).
    pub pools: crate::pools::PoolSettings,
}

/// Where Herald asks Meta about phone number ids unless `HERALD_META_GRAPH_URL` says otherwise.
pub const META_GRAPH_URL: &str = "https://graph.facebook.com/v21.0";

/// Default limits of a CSV import (docs/contacts.md, decision 0025).
pub const IMPORT_MAX_ROWS: u64 = 1_000_000;
pub const IMPORT_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// Where `herald serve` looks for the built dashboard unless `HERALD_WEB_DIR` says otherwise.
pub const DEFAULT_WEB_DIR: &str = "web/dist";

const PLANS: [&str; 4] = ["basic", "pro", "max", "unlimited"];

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Settings {
    /// Reads the process environment; `.env` in the working directory fills what is unset.
    pub fn from_env() -> anyhow::Result<Settings> {
        let _ = dotenvy::dotenv();
        let environment = match var("HERALD_ENV").as_deref() {
            None | Some("development") | Some("dev") => Environment::Development,
            Some("production") | Some("prod") => Environment::Production,
            Some(other) => {
                anyhow::bail!("HERALD_ENV must be development or production, not {other:?}")
            }
        };
        let jwt_secret = match (var("HERALD_JWT_SECRET"), environment) {
            (Some(s), Environment::Production) => {
                crate::secret_strength::check(&s).map_err(anyhow::Error::msg)?;
                Secret::new(s)
            }
            (Some(s), _) if s.len() >= 32 => Secret::new(s),
            (Some(_), _) => anyhow::bail!("HERALD_JWT_SECRET must be at least 32 characters"),
            (None, Environment::Production) => {
                anyhow::bail!("HERALD_JWT_SECRET is required outside development")
            }
            (None, Environment::Development) => {
                tracing::warn!(
                    "HERALD_JWT_SECRET unset: using a random key, tokens end with this process"
                );
                Secret::new(hex::encode(rand::random::<[u8; 32]>()))
            }
        };
        let default_plan = var("HERALD_DEFAULT_PLAN").unwrap_or_else(|| "basic".into());
        if !PLANS.contains(&default_plan.as_str()) {
            anyhow::bail!("HERALD_DEFAULT_PLAN must be one of {PLANS:?}");
        }
        let allow_private_media_urls = match var("HERALD_ALLOW_PRIVATE_MEDIA_URLS").as_deref() {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(other) => anyhow::bail!(
                "HERALD_ALLOW_PRIVATE_MEDIA_URLS must be true or false, not {other:?}"
            ),
        };
        let parse_num = |name: &str, default: u64| -> anyhow::Result<u64> {
            match var(name) {
                None => Ok(default),
                Some(v) => v
                    .parse()
                    .map_err(|_| anyhow::anyhow!("{name} must be a whole number, not {v:?}")),
            }
        };
        Ok(Settings {
            database_url: Secret::new(
                var("DATABASE_URL").unwrap_or_else(|| "postgres://localhost/herald".into()),
            ),
            nats_url: var("NATS_URL"),
            listen: var("HERALD_LISTEN").unwrap_or_else(|| "127.0.0.1:8080".into()),
            public_url: var("HERALD_PUBLIC_URL").map(|u| u.trim_end_matches('/').to_string()),
            wuzapi_url: var("HERALD_WUZAPI_URL").unwrap_or_else(|| "http://127.0.0.1:8081".into()),
            wuzapi_admin_token: var("HERALD_WUZAPI_ADMIN_TOKEN").map(Secret::new),
            jwt_secret,
            allow_private_media_urls,
            default_plan,
            admin_token: var("HERALD_ADMIN_TOKEN").map(Secret::new),
            environment,
            dispatch_workers: parse_num("HERALD_DISPATCH_WORKERS", 4)?.clamp(0, 64) as usize,
            db_pool_size: parse_num("HERALD_DB_POOL", 32)?.clamp(4, 500) as u32,
            dispatch_batch_size: parse_num("HERALD_DISPATCH_BATCH", 500)?.clamp(1, 10_000) as i64,
            dispatch_concurrency: parse_num("HERALD_DISPATCH_CONCURRENCY", 64)?.clamp(1, 1_024)
                as usize,
            dispatch_lease_secs: parse_num("HERALD_DISPATCH_LEASE_SECS", 60)?.clamp(1, 3_600),
            recurrence_grace_secs: parse_num("HERALD_RECURRENCE_GRACE_SECS", 3_600)?,
            meta_verify_token: var("HERALD_META_VERIFY_TOKEN").map(Secret::new),
            meta_app_secret: var("HERALD_META_APP_SECRET").map(Secret::new),
            quota_window_secs: parse_num("HERALD_QUOTA_WINDOW_SECS", 3_600)?.clamp(1, 86_400),
            sse_keepalive_secs: parse_num("HERALD_SSE_KEEPALIVE_SECS", 15)?.clamp(1, 300),
            import_max_rows: parse_num("HERALD_IMPORT_MAX_ROWS", IMPORT_MAX_ROWS)?
                .clamp(1, 100_000_000) as usize,
            import_max_bytes: parse_num("HERALD_IMPORT_MAX_BYTES", IMPORT_MAX_BYTES)?
                .clamp(1024, 64 * 1024 * 1024 * 1024),
            media_gc_interval_secs: parse_num("HERALD_MEDIA_GC_INTERVAL_SECS", 3_600)?
                .clamp(60, 7 * 86_400),
            media_grace_secs: parse_num("HERALD_MEDIA_GRACE_SECS", 86_400)?.max(3_600),
            throttles: herald_accounts::throttle::Throttles::from_env(parse_num)?,
            trusted_proxies: match var("HERALD_TRUSTED_PROXIES") {
                None => Vec::new(),
                Some(list) => list
                    .split(',')
                    .map(|a| {
                        a.trim().parse().map_err(|_| {
                            anyhow::anyhow!(
                                "HERALD_TRUSTED_PROXIES must list IP addresses, not {a:?}"
                            )
                        })
                    })
                    .collect::<anyhow::Result<_>>()?,
            },
            meta_graph_url: var("HERALD_META_GRAPH_URL")
                .unwrap_or_else(|| META_GRAPH_URL.into())
                .trim_end_matches('/')
                .to_string(),
            web_dir: var("HERALD_WEB_DIR")
                .unwrap_or_else(|| DEFAULT_WEB_DIR.into())
                .into(),
            body_idle_timeout_secs: parse_num("HERALD_BODY_IDLE_TIMEOUT_SECS", 30)?.clamp(1, 3_600),
            pools: crate::pools::PoolSettings::from_env(&parse_num)?,
        })
    }

    /// Settings for tests and tools: development defaults, nothing read from the environment.
    pub fn for_tests(database_url: &str, wuzapi_url: &str) -> Settings {
        Settings {
            database_url: Secret::new(database_url),
            nats_url: None,
            listen: "127.0.0.1:0".into(),
            public_url: None,
            wuzapi_url: wuzapi_url.into(),
            wuzapi_admin_token: None,
            jwt_secret: Secret::new(hex::encode(rand::random::<[u8; 32]>())),
            allow_private_media_urls: true,
            // tests choose a limited plan where the limits are what they test
            default_plan: "unlimited".into(),
            admin_token: None,
            environment: Environment::Development,
            dispatch_workers: 2,
            db_pool_size: 16,
            dispatch_batch_size: 500,
            dispatch_concurrency: 64,
            dispatch_lease_secs: 60,
            recurrence_grace_secs: 3_600,
            meta_verify_token: None,
            meta_app_secret: None,
            quota_window_secs: 3_600,
            sse_keepalive_secs: 15,
            import_max_rows: IMPORT_MAX_ROWS as usize,
            import_max_bytes: IMPORT_MAX_BYTES,
            media_gc_interval_secs: 3_600,
            media_grace_secs: 86_400,
            throttles: Default::default(),
            trusted_proxies: Vec::new(),
            // tests point this at a fake Graph API of their own; nothing answers here
            meta_graph_url: "http://127.0.0.1:9".into(),
            web_dir: DEFAULT_WEB_DIR.into(),
            body_idle_timeout_secs: 30,
            pools: Default::default(),
        }
    }
}
