//! Attempt counters that stop guessing: failed logins per account and per client address,
//! registrations per address, and number links per tenant and per address (docs/accounts.md,
//! decisions 0041 and 0042).
//!
//! Each counter is one row of `auth_throttle` with a fixed window that starts at its first
//! attempt. An attempt is counted BEFORE the work it guards (hashing a password, asking the
//! gateway or Meta), in the same statement that reads the count, so simultaneous attempts cannot
//! all slip under the limit. Counting in Postgres makes every instance agree and keeps process
//! memory flat whatever an attacker sends; ended windows are deleted as Herald goes.

use std::net::IpAddr;

use sqlx::PgPool;

/// Why a counter refused, or could not count.
#[derive(Debug, thiserror::Error)]
pub enum ThrottleError {
    /// Over the limit: the attempt is refused until the window ends.
    #[error("{refusal}; try again in {retry_after_secs} seconds")]
    TooManyAttempts {
        refusal: &'static str,
        limit: u32,
        window_secs: u64,
        retry_after_secs: i64,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// At most `attempts` in `window_secs` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub attempts: u32,
    pub window_secs: u64,
}

/// Every throttle's limit (settings, docs/running.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttles {
    /// Failed logins for one email (`HERALD_LOGIN_FAILURES_PER_ACCOUNT`, default 5 per
    /// `HERALD_LOGIN_WINDOW_SECS`, default 900).
    pub login_account: Limit,
    /// Failed logins from one client address (`HERALD_LOGIN_FAILURES_PER_ADDRESS`, default 20 per
    /// the same window).
    pub login_address: Limit,
    /// Registrations from one client address (`HERALD_REGISTRATIONS_PER_ADDRESS`, default 10 an
    /// hour).
    pub register_address: Limit,
    /// Attempts to link a number (a WuzAPI token or a Cloud API phone number id) by one tenant
    /// (`HERALD_LINKS_PER_TENANT`, default 10 a minute).
    pub link_tenant: Limit,
    /// The same from one client address (`HERALD_LINKS_PER_ADDRESS`, default 30 a minute).
    pub link_address: Limit,
}

impl Default for Throttles {
    fn default() -> Self {
        Throttles {
            login_account: Limit {
                attempts: 5,
                window_secs: 900,
            },
            login_address: Limit {
                attempts: 20,
                window_secs: 900,
            },
            register_address: Limit {
                attempts: 10,
                window_secs: 3_600,
            },
            link_tenant: Limit {
                attempts: 10,
                window_secs: 60,
            },
            link_address: Limit {
                attempts: 30,
                window_secs: 60,
            },
        }
    }
}

impl Throttles {
    /// Reads the settings through `num(name, default)`.
    pub fn from_env(num: impl Fn(&str, u64) -> anyhow::Result<u64>) -> anyhow::Result<Self> {
        let d = Throttles::default();
        let attempts = |name: &str, default: u32| -> anyhow::Result<u32> {
            Ok(num(name, default.into())?.clamp(1, 1_000_000) as u32)
        };
        let login_window =
            num("HERALD_LOGIN_WINDOW_SECS", d.login_account.window_secs)?.clamp(1, 86_400);
        Ok(Throttles {
            login_account: Limit {
                attempts: attempts(
                    "HERALD_LOGIN_FAILURES_PER_ACCOUNT",
                    d.login_account.attempts,
                )?,
                window_secs: login_window,
            },
            login_address: Limit {
                attempts: attempts(
                    "HERALD_LOGIN_FAILURES_PER_ADDRESS",
                    d.login_address.attempts,
                )?,
                window_secs: login_window,
            },
            register_address: Limit {
                attempts: attempts(
                    "HERALD_REGISTRATIONS_PER_ADDRESS",
                    d.register_address.attempts,
                )?,
                ..d.register_address
            },
            link_tenant: Limit {
                attempts: attempts("HERALD_LINKS_PER_TENANT", d.link_tenant.attempts)?,
                ..d.link_tenant
            },
            link_address: Limit {
                attempts: attempts("HERALD_LINKS_PER_ADDRESS", d.link_address.attempts)?,
                ..d.link_address
            },
        })
    }
}

/// What a counter guards; the scope names its rows.
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    LoginAccount,
    LoginAddress,
    Register,
    LinkTenant,
    LinkAddress,
}

impl Scope {
    fn name(self) -> &'static str {
        match self {
            Scope::LoginAccount => "login_account",
            Scope::LoginAddress => "login_address",
            Scope::Register => "register_address",
            Scope::LinkTenant => "link_tenant",
            Scope::LinkAddress => "link_address",
        }
    }

    fn refusal(self) -> &'static str {
        match self {
            Scope::LoginAccount => "too many failed logins for this account",
            Scope::LoginAddress => "too many failed logins from this address",
            Scope::Register => "too many registrations from this address",
            Scope::LinkTenant => "too many attempts to link a number for this tenant",
            Scope::LinkAddress => "too many attempts to link a number from this address",
        }
    }
}

/// Counts one attempt under `key`; over the limit it is [`ThrottleError::TooManyAttempts`] with
/// the seconds until the window ends (429 `too_many_attempts` with `Retry-After` over HTTP).
pub async fn attempt(
    pool: &PgPool,
    scope: Scope,
    key: &str,
    limit: Limit,
) -> Result<(), ThrottleError> {
    let (attempts, retry_after): (i32, i64) = sqlx::query_as(
        "INSERT INTO auth_throttle AS t (scope, key, window_start, window_end, attempts)
         VALUES ($1, $2, now(), now() + make_interval(secs => $3), 1)
         ON CONFLICT (scope, key) DO UPDATE SET
           attempts = CASE WHEN t.window_end <= now() THEN 1
                           ELSE LEAST(t.attempts + 1, 1000000000) END,
           window_start = CASE WHEN t.window_end <= now() THEN now() ELSE t.window_start END,
           window_end = CASE WHEN t.window_end <= now() THEN now() + make_interval(secs => $3)
                             ELSE t.window_end END
         RETURNING attempts, GREATEST(1, ceil(extract(epoch FROM window_end - now())))::bigint",
    )
    .bind(scope.name())
    .bind(key)
    .bind(limit.window_secs as f64)
    .fetch_one(pool)
    .await?;
    // ended windows go away as Herald goes: about one attempt in 64 sweeps them
    if rand::random::<u8>() < 4 {
        sqlx::query("DELETE FROM auth_throttle WHERE window_end < now()")
            .execute(pool)
            .await?;
    }
    if attempts as i64 > i64::from(limit.attempts) {
        return Err(ThrottleError::TooManyAttempts {
            refusal: scope.refusal(),
            limit: limit.attempts,
            window_secs: limit.window_secs,
            retry_after_secs: retry_after,
        });
    }
    Ok(())
}

/// Forgets `key`'s counter (a successful login resets its account's).
pub async fn reset(pool: &PgPool, scope: Scope, key: &str) -> Result<(), ThrottleError> {
    sqlx::query("DELETE FROM auth_throttle WHERE scope = $1 AND key = $2")
        .bind(scope.name())
        .bind(key)
        .execute(pool)
        .await?;
    Ok(())
}

/// Takes one attempt back (a successful login was counted on its address like a failure, so
/// an office behind one address is only limited by its failures).
pub async fn forgive(pool: &PgPool, scope: Scope, key: &str) -> Result<(), ThrottleError> {
    sqlx::query(
        "UPDATE auth_throttle SET attempts = attempts - 1
          WHERE scope = $1 AND key = $2 AND attempts > 0",
    )
    .bind(scope.name())
    .bind(key)
    .execute(pool)
    .await?;
    Ok(())
}

/// The client's address: the peer's, or, when the peer is one of the operator's trusted proxies
/// (`HERALD_TRUSTED_PROXIES`), the nearest address in `X-Forwarded-For` that is not one. An
/// IPv4-mapped IPv6 address is its IPv4 address, and any other IPv6 address counts by its /64,
/// which one subscriber usually holds whole. Throttles and the password-hashing pool both key
/// by it, so behind a proxy neither lumps every client together.
pub fn client_ip(
    peer: Option<IpAddr>,
    forwarded_for: Option<&str>,
    trusted: &[IpAddr],
) -> Option<IpAddr> {
    let mut client = peer;
    if let (Some(p), Some(header)) = (peer, forwarded_for) {
        if trusted.contains(&p) {
            // right to left: each trusted hop appended the address it saw
            for hop in header.rsplit(',') {
                match hop.trim().parse::<IpAddr>() {
                    Ok(ip) if trusted.contains(&ip) => continue,
                    Ok(ip) => {
                        client = Some(ip);
                        break;
                    }
                    // garbage in the header: keep the last address a trusted hop vouched for
                    Err(_) => break,
                }
            }
        }
    }
    client.map(|ip| match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    })
}

/// The address throttles count by ([`client_ip`]), as the text their counters are keyed by.
pub fn client_key(peer: Option<IpAddr>, forwarded_for: Option<&str>, trusted: &[IpAddr]) -> String {
    match client_ip(peer, forwarded_for, trusted) {
        None => "unknown".into(),
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn the_peer_counts_unless_it_is_a_trusted_proxy() {
        let proxy = ip("10.0.0.1");
        // an untrusted peer cannot choose its address with a header
        assert_eq!(
            client_key(Some(ip("203.0.113.9")), Some("1.2.3.4"), &[proxy]),
            "203.0.113.9"
        );
        assert_eq!(
            client_key(Some(ip("203.0.113.9")), Some("1.2.3.4"), &[]),
            "203.0.113.9"
        );
        // behind the proxy: the nearest untrusted hop, not what the client wrote first
        assert_eq!(
            client_key(Some(proxy), Some("6.6.6.6, 198.51.100.7"), &[proxy]),
            "198.51.100.7"
        );
        assert_eq!(
            client_key(Some(proxy), Some("198.51.100.7, 10.0.0.1"), &[proxy]),
            "198.51.100.7"
        );
        assert_eq!(
            client_key(Some(proxy), Some("nonsense"), &[proxy]),
            "10.0.0.1"
        );
        assert_eq!(client_key(Some(proxy), None, &[proxy]), "10.0.0.1");
    }

    #[test]
    fn ipv6_counts_by_its_64() {
        assert_eq!(
            client_key(Some(ip("2001:db8:1:2:aaaa::1")), None, &[]),
            client_key(Some(ip("2001:db8:1:2:bbbb::9")), None, &[])
        );
        assert_eq!(
            client_key(Some(ip("::ffff:192.0.2.1")), None, &[]),
            "192.0.2.1"
        );
    }

    #[test]
    fn the_hashing_pool_sees_the_same_client_as_the_throttles() {
        let proxy = ip("10.0.0.5");
        // behind a trusted proxy each client is its own, not the proxy
        assert_eq!(
            client_ip(Some(proxy), Some("203.0.113.7"), &[proxy]),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(
            client_ip(Some(proxy), Some("203.0.113.7"), &[]),
            Some(proxy),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(
            client_ip(Some(ip("2001:db8:1:2:aaaa::1")), None, &[]),
            Some(ip("2001:db8:1:2::"))
        );
        assert_eq!(
            client_key(Some(proxy), Some("203.0.113.7"), &[proxy]),
            "203.0.113.7"
        );
    }
}
