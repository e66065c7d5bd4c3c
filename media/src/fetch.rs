//! Downloading an image without letting the URL reach where it should not (SSRF).
//!
//! 1. The URL must be `http` or `https`, without credentials. The `url` crate normalises the
//!    host first, so odd IPv4 spellings (`2130706433`, `0x7f.1`, `017700000001`, `127.1`) become
//!    the address they mean and are judged as such.
//! 2. Herald resolves the host itself and refuses it if ANY address it resolves to is refused by
//!    [`address`](crate::address) (IP literals are checked directly).
//! 3. The request goes through a client built for this one request whose DNS resolver returns
//!    exactly the vetted addresses, so a second lookup cannot answer differently (DNS
//!    rebinding): there is no second lookup. Proxies from the environment are ignored.
//! 4. Redirects are not followed automatically: at most [`MAX_REDIRECTS`] are followed by hand,
//!    and each new URL goes through 1-3 again.
//! 5. The body is capped at [`MAX_SOURCE_BYTES`](crate::MAX_SOURCE_BYTES): a larger
//!    `Content-Length` is refused before reading, and the stream stops at the cap. Connecting has
//!    [`CONNECT_TIMEOUT`], the whole fetch (every hop and the body) [`TOTAL_TIMEOUT`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_LENGTH, LOCATION};
use reqwest::Url;

use crate::{address, MediaError, MediaPolicy, MAX_SOURCE_BYTES};

/// Redirects followed (each re-checked) before giving up.
pub const MAX_REDIRECTS: usize = 3;
/// A host that does not accept a connection in this time is treated as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The whole fetch: resolving, every hop and the body.
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest URL accepted.
const MAX_URL_LEN: usize = 2_048;

/// Downloads `url` under the SSRF rules above; the body, at most 16 MB.
pub async fn fetch(url: &str, policy: &MediaPolicy) -> Result<Vec<u8>, MediaError> {
    match tokio::time::timeout(TOTAL_TIMEOUT, fetch_within(url, policy)).await {
        Ok(result) => result,
        Err(_) => Err(MediaError::Fetch(format!(
            "fetching the image took longer than {} s",
            TOTAL_TIMEOUT.as_secs()
        ))),
    }
}

async fn fetch_within(url: &str, policy: &MediaPolicy) -> Result<Vec<u8>, MediaError> {
    let mut url = parse(url)?;
    for hop in 0..=MAX_REDIRECTS {
        let addrs = vet(&url, policy).await?;
        let response = get(&url, addrs).await?;
        let status = response.status();
        if status.is_redirection() {
            let Some(location) = response
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
            else {
                return Err(MediaError::Fetch(format!(
                    "the image URL answered HTTP {} without a usable Location",
                    status.as_u16()
                )));
            };
            if hop == MAX_REDIRECTS {
                return Err(MediaError::Fetch(format!(
                    "the image URL redirected more than {MAX_REDIRECTS} times"
                )));
            }
            let next = url.join(location).map_err(|e| {
                MediaError::Fetch(format!("the image URL redirected to an invalid URL: {e}"))
            })?;
            url = parse(next.as_str())?;
            continue;
        }
        if !status.is_success() {
            return Err(MediaError::Fetch(format!(
                "the image URL answered HTTP {}",
                status.as_u16()
            )));
        }
        return read_capped(response).await;
    }
    // The loop returns on every path; this keeps the compiler and a future edit honest.
    Err(MediaError::Fetch("too many redirects".into()))
}

/// Checks the URL's form: http(s), a host, no credentials.
pub fn parse(raw: &str) -> Result<Url, MediaError> {
    let raw = raw.trim();
    if raw.len() > MAX_URL_LEN {
        return Err(MediaError::Refused(format!(
            "the image URL is longer than {MAX_URL_LEN} characters"
        )));
    }
    let url = Url::parse(raw)
        .map_err(|e| MediaError::Refused(format!("the image URL is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(MediaError::Refused(format!(
            "only http and https image URLs are fetched, not {}",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(MediaError::Refused(
            "image URLs with credentials are not accepted".into(),
        ));
    }
    if url.host().is_none() {
        return Err(MediaError::Refused("the image URL has no host".into()));
    }
    Ok(url)
}

/// The addresses the request may use: every address of the host, each one allowed.
pub async fn vet(url: &Url, policy: &MediaPolicy) -> Result<Vec<SocketAddr>, MediaError> {
    let port = url
        .port_or_known_default()
        .ok_or_else(|| MediaError::Refused("the image URL has no port".into()))?;
    let (literal, addrs) = match url.host() {
        Some(url::Host::Ipv4(ip)) => (true, vec![SocketAddr::new(IpAddr::V4(ip), port)]),
        Some(url::Host::Ipv6(ip)) => (true, vec![SocketAddr::new(IpAddr::V6(ip), port)]),
        Some(url::Host::Domain(domain)) => {
            let found =
                tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::lookup_host((domain, port)))
                    .await
                    .map_err(|_| MediaError::Fetch(format!("resolving {domain} timed out")))?
                    .map_err(|_| {
                        MediaError::Fetch(format!("cannot resolve the image host {domain}"))
                    })?;
            let mut addrs: Vec<SocketAddr> = found.collect();
            addrs.sort();
            addrs.dedup();
            if addrs.is_empty() {
                return Err(MediaError::Fetch(format!(
                    "the image host {domain} has no address"
                )));
            }
            (false, addrs)
        }
        None => return Err(MediaError::Refused("the image URL has no host".into())),
    };
    for addr in &addrs {
        if let Err(refusal) = address::check(addr.ip(), policy.allow_private) {
            // The address and its range only when the user typed it: naming what an internal
            // name resolves to (or even which kind of range) would map the private network for
            // the caller. The log keeps it, at debug level.
            if literal {
                return Err(MediaError::Refused(format!(
                    "{} is a {} address; Herald only fetches images from public addresses",
                    addr.ip(),
                    refusal.range
                )));
            }
            tracing::debug!(host = ?url.host_str(), address = %addr.ip(), range = refusal.range, "image host refused");
            return Err(MediaError::Refused(
                "the image host resolves to a private, loopback or reserved address; Herald only \
                 fetches images from public addresses"
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

async fn get(url: &Url, addrs: Vec<SocketAddr>) -> Result<reqwest::Response, MediaError> {
    metrics::counter!("herald_media_fetches_total").increment(1);
    let client = reqwest::Client::builder()
        .dns_resolver(Arc::new(Pinned(addrs)))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(TOTAL_TIMEOUT)
        .pool_max_idle_per_host(0)
        .user_agent(concat!(
            "Herald/",
            env!("CARGO_PKG_VERSION"),
            " (image fetch)"
        ))
        .build()
        .map_err(|e| MediaError::Internal(format!("cannot build the HTTP client: {e}")))?;
    client
        .get(url.clone())
        .header(ACCEPT, "image/*")
        .send()
        .await
        .map_err(transport_error)
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, MediaError> {
    let too_large = || {
        MediaError::TooLarge(format!(
            "the image is larger than {} MB",
            MAX_SOURCE_BYTES / (1024 * 1024)
        ))
    };
    let declared = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_SOURCE_BYTES as u64) {
        return Err(too_large());
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(64 * 1024) as usize);
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > MAX_SOURCE_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    if body.is_empty() {
        return Err(MediaError::Invalid(
            "the image URL answered an empty body".into(),
        ));
    }
    Ok(body)
}

/// Without the URL (it may carry tokens); with the cause.
fn transport_error(error: reqwest::Error) -> MediaError {
    let what = if error.is_timeout() {
        "the image host timed out"
    } else if error.is_connect() {
        "cannot connect to the image host"
    } else {
        "fetching the image failed"
    };
    let error = error.without_url();
    let mut message = what.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    MediaError::Fetch(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_of(raw: &str) -> String {
        parse(raw)
            .expect("parses")
            .host_str()
            .expect("host")
            .to_string()
    }

    #[test]
    fn only_http_and_https_without_credentials() {
        for bad in [
            "ftp://example.com/a.png",
            "file:///etc/passwd",
            "gopher://example.com/",
            "data:image/png;base64,AA",
            "javascript:alert(1)",
            "http://user:pass@example.com/a.png",
            "http://user@example.com/a.png",
            "not a url",
            "",
        ] {
            assert!(
                matches!(parse(bad), Err(MediaError::Refused(_))),
                "{bad:?} must be refused"
            );
        }
        assert!(parse("https://example.com/a.png").is_ok());
        assert!(parse(" http://example.com:8080/a.png ").is_ok());
        assert!(parse(&format!("https://example.com/{}", "a".repeat(3_000))).is_err());
    }

    #[test]
    fn odd_ipv4_spellings_are_normalised_to_the_address_they_mean() {
        for odd in [
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0x7f000001/",
            "http://017700000001/",
            "http://127.1/",
            "http://0177.0.0.1/",
            "http://127.0.0.1./",
        ] {
            assert_eq!(host_of(odd), "127.0.0.1", "{odd}");
        }
        assert_eq!(host_of("http://[::ffff:127.0.0.1]/"), "[::ffff:7f00:1]");
        assert_eq!(host_of("http://0/"), "0.0.0.0");
        assert_eq!(host_of("http://2852039166/"), "169.254.169.254");
    }

    async fn refused(raw: &str, allow_private: bool) -> String {
        let policy = MediaPolicy { allow_private };
        let url = parse(raw).expect("a well-formed URL");
        match vet(&url, &policy).await {
            Err(MediaError::Refused(reason)) => reason,
            other => panic!("{raw} must be refused, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn ip_literals_are_vetted_without_a_connection() {
        let reason = refused("http://169.254.169.254/latest/meta-data/", true).await;
        assert!(reason.contains("link-local"), "{reason}");
        for raw in [
            "http://2130706433/",
            "http://0x7f.1/x.png",
            "http://127.0.0.1:9/x.png",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://10.0.0.1/",
            "http://[fd00::1]/",
        ] {
            let reason = refused(raw, false).await;
            assert!(reason.contains("public addresses"), "{raw}: {reason}");
        }
        for raw in [
            "http://0.0.0.0:9/",
            "http://0/",
            "http://[::]/",
            "http://[fe80::1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
        ] {
            refused(raw, true).await;
        }
        let url = parse("http://127.0.0.1:8080/x.png").expect("parses");
        let allowed = vet(
            &url,
            &MediaPolicy {
                allow_private: true,
            },
        )
        .await
        .expect("loopback allowed with the test setting");
        assert_eq!(allowed, vec!["127.0.0.1:8080".parse().expect("addr")]);
    }

    #[tokio::test]
    async fn host_names_are_resolved_and_every_address_checked() {
        let reason = refused("http://localhost/", false).await;
        assert!(
            reason.starts_with("the image host resolves to a private, loopback or reserved"),
            "{reason}"
        );
        assert!(
            !reason.contains("127.0.0.1"),
            "no resolved address shown: {reason}"
        );
        let reason = refused("http://LOCALHOST:8080/x.png", false).await;
        assert!(reason.contains("loopback"), "{reason}");
        // nor which kind of range a name resolved to: the same words for every refused name
        assert_eq!(reason, refused("http://localhost/", false).await);
    }
}
