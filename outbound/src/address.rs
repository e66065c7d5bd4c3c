//! Where Herald may post webhooks: the SSRF rules of image URLs (docs/images.md,
//! docs/webhooks-out.md), checked when an endpoint is created or changed AND before every
//! delivery, because what a name resolves to can change.
//!
//! - `http` or `https`, a host, no credentials, at most [`MAX_URL_LEN`] characters.
//! - Every address the host resolves to must pass `herald_media::address::check`
//!   (private ranges only with `HERALD_ALLOW_PRIVATE_WEBHOOK_URLS=true`, for tests).
//! - The request goes to exactly the vetted addresses (a pinned resolver: no second lookup that
//!   could answer differently), ignores proxies from the environment and follows no redirect.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use url::Url;

/// Longest endpoint URL accepted.
pub const MAX_URL_LEN: usize = 2_048;
/// Resolving the host may take this long.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a URL is not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Never acceptable as written (scheme, form, a refused address).
    #[error("{0}")]
    Refused(String),
    /// Its host does not resolve now (may work later).
    #[error("{0}")]
    Unresolved(String),
}

/// Checks the URL's form.
pub fn parse(raw: &str) -> Result<Url, UrlError> {
    let raw = raw.trim();
    if raw.len() > MAX_URL_LEN {
        return Err(UrlError::Refused(format!(
            "the URL is longer than {MAX_URL_LEN} characters"
        )));
    }
    let url = Url::parse(raw).map_err(|e| UrlError::Refused(format!("not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlError::Refused(format!(
            "only http and https URLs are accepted, not {}",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Refused(
            "URLs with credentials are not accepted".into(),
        ));
    }
    if url.host().is_none() {
        return Err(UrlError::Refused("the URL has no host".into()));
    }
    Ok(url)
}

/// The addresses a request to `url` may use: every address of its host, each one allowed.
pub async fn vet(url: &Url, allow_private: bool) -> Result<Vec<SocketAddr>, UrlError> {
    let port = url
        .port_or_known_default()
        .ok_or_else(|| UrlError::Refused("the URL has no port".into()))?;
    let (literal, addrs) = match url.host() {
        Some(url::Host::Ipv4(ip)) => (true, vec![SocketAddr::new(IpAddr::V4(ip), port)]),
        Some(url::Host::Ipv6(ip)) => (true, vec![SocketAddr::new(IpAddr::V6(ip), port)]),
        Some(url::Host::Domain(domain)) => {
            let found =
                tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((domain, port)))
                    .await
                    .map_err(|_| UrlError::Unresolved(format!("resolving {domain} timed out")))?
                    .map_err(|_| UrlError::Unresolved(format!("cannot resolve {domain}")))?;
            let mut addrs: Vec<SocketAddr> = found.collect();
            addrs.sort();
            addrs.dedup();
            if addrs.is_empty() {
                return Err(UrlError::Unresolved(format!("{domain} has no address")));
            }
            (false, addrs)
        }
        None => return Err(UrlError::Refused("the URL has no host".into())),
    };
    for addr in &addrs {
        if let Err(refusal) = herald_media::address::check(addr.ip(), allow_private) {
            // the range only for an address the tenant typed: naming what a name resolves to
            // would map the private network for them (the log keeps it, at debug level)
            if literal {
                return Err(UrlError::Refused(format!(
                    "{} is a {} address; Herald only posts webhooks to public addresses",
                    addr.ip(),
                    refusal.range
                )));
            }
            tracing::debug!(host = ?url.host_str(), address = %addr.ip(), range = refusal.range, "webhook host refused");
            return Err(UrlError::Refused(
                "the host resolves to a private, loopback or reserved address; Herald only posts \
                 webhooks to public addresses"
                    .into(),
            ));
        }
    }
    Ok(addrs)
}

/// A resolver that answers every name with the vetted addresses and nothing else.
struct Pinned(Vec<SocketAddr>);

impl reqwest::dns::Resolve for Pinned {
    fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let addrs = self.0.clone();
        Box::pin(async move {
            let iter: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(iter)
        })
    }
}

/// A client that reaches only `addrs`, follows no redirect and gives up after `timeout`.
pub fn pinned_client(addrs: Vec<SocketAddr>, timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .dns_resolver(Arc::new(Pinned(addrs)))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .timeout(timeout)
        .user_agent(concat!("Herald/", env!("CARGO_PKG_VERSION"), " (webhooks)"))
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn check(raw: &str, allow_private: bool) -> Result<Vec<SocketAddr>, UrlError> {
        vet(&parse(raw)?, allow_private).await
    }

    #[tokio::test]
    async fn private_and_metadata_addresses_are_refused_and_only_private_ones_can_be_allowed() {
        for url in [
            "http://127.0.0.1:9/hook",
            "http://10.1.2.3/hook",
            "http://[::1]/hook",
            "http://2130706433/hook", // 127.0.0.1 spelled as a number
            "http://localhost:9/hook",
        ] {
            assert!(
                matches!(check(url, false).await, Err(UrlError::Refused(_))),
                "{url} refused"
            );
            assert!(check(url, true).await.is_ok(), "{url} allowed in tests");
        }
        for url in ["http://169.254.169.254/latest/meta-data", "http://0.0.0.0/"] {
            assert!(
                matches!(check(url, true).await, Err(UrlError::Refused(_))),
                "{url} always refused"
            );
        }
        assert!(check("http://93.184.215.14/hook", false).await.is_ok());
    }

    #[test]
    fn only_plain_http_urls_without_credentials() {
        for url in [
            "ftp://example.com/x",
            "file:///etc/passwd",
            "https://user:pass@example.com/",
            "not a url",
            "",
        ] {
            assert!(parse(url).is_err(), "{url}");
        }
        assert!(parse(&format!("https://example.com/{}", "a".repeat(MAX_URL_LEN))).is_err());
        assert!(parse("https://example.com/hooks?x=1").is_ok());
    }
}
