//! Images for image templates (docs/images.md, decision 0021): fetched SSRF-safely (or taken
//! from base64), decoded with limits, re-encoded as a JPEG no larger than WhatsApp needs, stored
//! ONCE under the SHA-256 of that JPEG, and handed to the dispatcher as a data URL that each
//! process loads once, however many recipients and campaigns use it.
//!
//! The one entry point is [`prepare_image`] (source in, [`PreparedImage`] out), then [`store`];
//! templates use both at creation, single image sends (`POST /api/v1/messages`) at acceptance.
//!
//! # Layout
//! - [`address`] — which IP addresses Herald refuses to fetch from (loopback, private, link-local
//!   and metadata, CGNAT, multicast, ... in v4, v6 and IPv4-in-IPv6 forms).
//! - [`fetch`] — the download: http(s) only, the host resolved and vetted by Herald and the
//!   connection pinned to the vetted addresses, redirects followed by hand and re-checked, 16 MB
//!   cap, timeouts.
//! - [`picture`] — decoding with `image::Limits`, resizing, JPEG re-encoding (blocking code, run
//!   in `spawn_blocking`).
//! - [`cache`] — the dispatcher's per-process cache of data URLs.
//! - [`gc`] — media lifetime: deleting rows nothing can send any more (decision 0024).
//! - [`testing`] — inputs for tests (a real 40,000 × 40,000 PNG bomb, made in milliseconds).
//! - here — [`prepare_image`] and its fair [`MediaPools`], the `media` table ([`store`], [`touch`], [`load`]), errors.

pub mod address;
pub mod cache;
pub mod fetch;
pub mod gc;
pub mod picture;
pub mod testing;

use base64::Engine as _;
use herald_domain::fair_pool::{self, FairPool, Refusal};
use herald_domain::template::ImageRef;
use sha2::{Digest, Sha256};
use std::time::Duration;
use uuid::Uuid;

pub use cache::MediaCache;

/// The most Herald downloads or accepts as base64 for one image (WhatsApp's own media limit).
pub const MAX_SOURCE_BYTES: usize = 16 * 1024 * 1024;

/// Who may download and decode now (decision 0043): each tenant gets a share of the downloads and
/// of the decodes, and a request that waits longer than the bound is refused as busy, so one
/// tenant's flood of slow images never queues another tenant's image behind it.
#[derive(Clone)]
pub struct MediaPools {
    /// Each download holds at most [`MAX_SOURCE_BYTES`].
    downloads: FairPool<Uuid>,
    /// Each decode may allocate up to [`picture::MAX_DECODED_BYTES`]: the permits bound the
    /// worst case (decision 0021).
    decodes: FairPool<Uuid>,
}

/// The sizes of [`MediaPools`] (`HERALD_IMAGE_*`, docs/running.md).
#[derive(Debug, Clone, Copy)]
pub struct MediaLimits {
    /// Downloads in flight per process.
    pub downloads: usize,
    /// Downloads one tenant may have in flight.
    pub downloads_per_tenant: usize,
    /// Decodes at once per process (one tenant: one at a time).
    pub decodes: usize,
    /// Longest wait for a download or a decode.
    pub wait: Duration,
}

impl Default for MediaLimits {
    fn default() -> Self {
        MediaLimits {
            downloads: 4,
            downloads_per_tenant: 2,
            decodes: 1,
            wait: Duration::from_secs(5),
        }
    }
}

/// Requests of one tenant that may wait for a download (or a decode); more are refused at once.
const WAITING_PER_TENANT: usize = 8;

impl MediaPools {
    pub fn new(limits: MediaLimits) -> Self {
        let pool = |name, permits, per_key| {
            FairPool::new(
                name,
                fair_pool::Limits {
                    permits,
                    per_key,
                    waiting_per_key: WAITING_PER_TENANT,
                    wait: limits.wait,
                    retry_after: limits.wait,
                },
            )
        };
        MediaPools {
            downloads: pool(
                "image_downloads",
                limits.downloads,
                limits.downloads_per_tenant,
            ),
            decodes: pool("image_decodes", limits.decodes, 1),
        }
    }

    pub fn downloads(&self) -> &FairPool<Uuid> {
        &self.downloads
    }

    pub fn decodes(&self) -> &FairPool<Uuid> {
        &self.decodes
    }
}

impl Default for MediaPools {
    fn default() -> Self {
        MediaPools::new(MediaLimits::default())
    }
}

/// Where an image comes from.
#[derive(Clone)]
pub enum ImageSource {
    /// An `http(s)` URL, fetched under the SSRF rules of [`fetch`].
    Url(String),
    /// Raw base64 or a `data:image/...;base64,...` URL.
    Base64(String),
}

impl std::fmt::Debug for ImageSource {
    // Never print megabytes of base64 (or a URL's query string) into a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageSource::Url(_) => f.write_str("ImageSource::Url"),
            ImageSource::Base64(b) => write!(f, "ImageSource::Base64({} chars)", b.len()),
        }
    }
}

/// What the fetch may reach.
#[derive(Debug, Clone, Copy, Default)]
pub struct MediaPolicy {
    /// `HERALD_ALLOW_PRIVATE_MEDIA_URLS`: also fetch from loopback, private (RFC 1918), CGNAT and
    /// IPv6 unique-local addresses. For tests only; link-local (cloud metadata), unspecified,
    /// multicast, broadcast and reserved addresses stay refused even then.
    pub allow_private: bool,
}

/// An image ready to send: a JPEG and its identity.
#[derive(Clone)]
pub struct PreparedImage {
    pub jpeg: Vec<u8>,
    /// Lowercase hex SHA-256 of `jpeg`: its key in the `media` table.
    pub sha256: String,
    pub width: u32,
    pub height: u32,
    /// The URL it was fetched from, if it was.
    pub source_url: Option<String>,
}

impl std::fmt::Debug for PreparedImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedImage")
            .field("sha256", &self.sha256)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("bytes", &self.jpeg.len())
            .finish()
    }
}

impl PreparedImage {
    /// The reference events carry (never the bytes).
    pub fn image_ref(&self) -> ImageRef {
        ImageRef {
            sha256: self.sha256.clone(),
            width: self.width,
            height: self.height,
            bytes: self.jpeg.len() as u64,
            source_url: self.source_url.clone(),
        }
    }

    /// `data:image/jpeg;base64,...`, as WuzAPI's `/chat/send/image` wants it.
    pub fn data_url(&self) -> String {
        data_url(&self.jpeg)
    }
}

/// `data:image/jpeg;base64,<bytes>`.
pub fn data_url(jpeg: &[u8]) -> String {
    let mut url = String::with_capacity(23 + jpeg.len().div_ceil(3) * 4);
    url.push_str("data:image/jpeg;base64,");
    base64::engine::general_purpose::STANDARD.encode_string(jpeg, &mut url);
    url
}

/// Why an image was refused. Everything but [`MediaError::Internal`] is the caller's input:
/// 422 at template creation, the recipient's failure reason at send time.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MediaError {
    /// A URL Herald does not fetch: scheme, credentials, or an address it refuses (SSRF rules).
    #[error("{0}")]
    Refused(String),
    /// The host could not be resolved or reached, timed out, or answered an error status.
    #[error("{0}")]
    Fetch(String),
    /// Over a limit: download size, pixel dimensions or decoded size.
    #[error("{0}")]
    TooLarge(String),
    /// Not an image, a format Herald does not take, or corrupt/truncated data.
    #[error("{0}")]
    Invalid(String),
    /// Herald's own failure (a processing task died); not the input's fault.
    #[error("{0}")]
    Internal(String),
    /// Every download (or decode) this tenant may use was taken for longer than the wait
    /// (decision 0043): try again after `retry_after_secs`. Not the input's fault.
    #[error("{message}")]
    Busy {
        message: String,
        retry_after_secs: u64,
    },
}

impl MediaError {
    /// A stable snake_case name for the kind of refusal (API error details, metrics).
    pub fn kind(&self) -> &'static str {
        match self {
            MediaError::Refused(_) => "url_refused",
            MediaError::Fetch(_) => "fetch_failed",
            MediaError::TooLarge(_) => "too_large",
            MediaError::Invalid(_) => "not_a_valid_image",
            MediaError::Internal(_) => "internal",
            MediaError::Busy { .. } => "busy",
        }
    }
}

/// Fetches or decodes the source, then decodes, resizes and re-encodes it as JPEG, for
/// `tenant_id`. Memory is bounded: at most [`MAX_SOURCE_BYTES`] per source, and the downloads and
/// decodes of `pools`, shared fairly between tenants.
#[tracing::instrument(skip_all, fields(source = ?source, tenant_id = %tenant_id))]
pub async fn prepare_image(
    source: ImageSource,
    policy: &MediaPolicy,
    pools: &MediaPools,
    tenant_id: Uuid,
) -> Result<PreparedImage, MediaError> {
    let result = prepare(source, policy, pools, tenant_id).await;
    match &result {
        Ok(image) => {
            metrics::counter!("herald_media_prepared_total").increment(1);
            tracing::info!(sha256 = %image.sha256, width = image.width, height = image.height, bytes = image.jpeg.len(), "image prepared");
        }
        Err(e) => {
            metrics::counter!("herald_media_refused_total", "kind" => e.kind()).increment(1);
            tracing::info!(kind = e.kind(), reason = %e, "image refused");
        }
    }
    result
}

fn busy(what: &str, refusal: Refusal) -> MediaError {
    MediaError::Busy {
        message: format!("too many images are being {what} right now; try again shortly"),
        retry_after_secs: refusal.retry_after_secs,
    }
}

/// The source's bytes as they came: downloaded, or still base64.
enum Raw {
    Fetched(Vec<u8>),
    Base64(String),
}

async fn prepare(
    source: ImageSource,
    policy: &MediaPolicy,
    pools: &MediaPools,
    tenant_id: Uuid,
) -> Result<PreparedImage, MediaError> {
    let (source, source_url) = match source {
        ImageSource::Url(url) => {
            let _permit = pools
                .downloads
                .acquire(tenant_id)
                .await
                .map_err(|r| busy("downloaded", r))?;
            let fetched = fetch::fetch(&url, policy).await?;
            (Raw::Fetched(fetched), Some(url.trim().to_string()))
        }
        // decoded with the image, under its permit: megabytes of base64 are CPU work too
        ImageSource::Base64(text) => (Raw::Base64(text), None),
    };
    let permit = pools
        .decodes
        .acquire(tenant_id)
        .await
        .map_err(|r| busy("processed", r))?;
    // the permit lives on the blocking thread: a request that goes away mid-decode does not
    // stop the decode, so it must not free the permit either
    let processed = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let bytes = match source {
            Raw::Fetched(bytes) => bytes,
            Raw::Base64(text) => decode_base64(&text)?,
        };
        picture::process(&bytes)
    })
    .await
    .map_err(|e| MediaError::Internal(format!("image processing stopped: {e}")))??;
    let sha256 = hex::encode(Sha256::digest(&processed.jpeg));
    Ok(PreparedImage {
        jpeg: processed.jpeg,
        sha256,
        width: processed.width,
        height: processed.height,
        source_url,
    })
}

/// Raw base64 (whitespace ignored, padding optional) or a `data:image/<type>;base64,` URL.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, MediaError> {
    let text = text.trim();
    let payload = if let Some(rest) = text.strip_prefix("data:") {
        let (header, data) = rest.split_once(',').ok_or_else(|| {
            MediaError::Invalid("a data URL needs a comma before its data".into())
        })?;
        let header = header.to_ascii_lowercase();
        if !header.starts_with("image/") || !header.ends_with(";base64") {
            return Err(MediaError::Invalid(
                "only data:image/...;base64, URLs are accepted".into(),
            ));
        }
        data
    } else {
        text
    };
    let compact: Vec<u8> = payload
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if compact.is_empty() {
        return Err(MediaError::Invalid("the image data is empty".into()));
    }
    if compact.len() / 4 * 3 > MAX_SOURCE_BYTES {
        return Err(MediaError::TooLarge(format!(
            "the image is larger than {} MB",
            MAX_SOURCE_BYTES / (1024 * 1024)
        )));
    }
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine
        .decode(&compact)
        .map_err(|e| MediaError::Invalid(format!("the image is not valid base64: {e}")))
}

/// Stores the JPEG under its hash and marks it used now; storing the same image again only
/// renews `last_used_at` (the bytes are the same), which keeps it out of the collector's reach
/// for the grace period while the caller writes what refers to it ([`gc`]).
pub async fn store<'e, E>(executor: E, image: &PreparedImage) -> sqlx::Result<()>
where
    E: sqlx::PgExecutor<'e>,
{
    sqlx::query(
        "INSERT INTO media (sha256, content_type, width, height, data, last_used_at)
         VALUES ($1, 'image/jpeg', $2, $3, $4, now())
         ON CONFLICT (sha256) DO UPDATE SET last_used_at = now()",
    )
    .bind(&image.sha256)
    .bind(i32::try_from(image.width).unwrap_or(i32::MAX))
    .bind(i32::try_from(image.height).unwrap_or(i32::MAX))
    .bind(&image.jpeg)
    .execute(executor)
    .await?;
    Ok(())
}

/// Marks a stored image as used now (a campaign or a recurring run created with it). `false`
/// when no image with this hash is stored. Inside a transaction this also holds the row until
/// commit, so a collector deleting it concurrently waits and then sees it used.
pub async fn touch<'e, E>(executor: E, sha256: &str) -> sqlx::Result<bool>
where
    E: sqlx::PgExecutor<'e>,
{
    let touched = sqlx::query("UPDATE media SET last_used_at = now() WHERE sha256 = $1")
        .bind(sha256)
        .execute(executor)
        .await?;
    Ok(touched.rows_affected() > 0)
}

/// Whether an image with this hash is stored (a read; writes nothing).
pub async fn is_stored<'e, E>(executor: E, sha256: &str) -> sqlx::Result<bool>
where
    E: sqlx::PgExecutor<'e>,
{
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM media WHERE sha256 = $1)")
        .bind(sha256)
        .fetch_one(executor)
        .await
}

/// The stored JPEG with this hash, if there is one.
pub async fn load<'e, E>(executor: E, sha256: &str) -> sqlx::Result<Option<Vec<u8>>>
where
    E: sqlx::PgExecutor<'e>,
{
    sqlx::query_scalar("SELECT data FROM media WHERE sha256 = $1")
        .bind(sha256)
        .fetch_optional(executor)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_comes_raw_or_as_a_data_url() {
        assert_eq!(decode_base64("aGVsbG8=").expect("raw"), b"hello");
        assert_eq!(decode_base64("aGVsbG8").expect("unpadded"), b"hello");
        assert_eq!(decode_base64(" aGVs\nbG8= ").expect("wrapped"), b"hello");
        assert_eq!(
            decode_base64("data:image/png;base64,aGVsbG8=").expect("data URL"),
            b"hello"
        );
        assert!(matches!(
            decode_base64("data:text/plain;base64,aGVsbG8="),
            Err(MediaError::Invalid(_))
        ));
        assert!(matches!(
            decode_base64("data:image/png,hello"),
            Err(MediaError::Invalid(_))
        ));
        assert!(matches!(
            decode_base64("not base64 at all!"),
            Err(MediaError::Invalid(_))
        ));
        assert!(matches!(decode_base64("   "), Err(MediaError::Invalid(_))));
    }

    #[test]
    fn base64_over_the_cap_is_refused_before_decoding() {
        let big = "A".repeat(MAX_SOURCE_BYTES / 3 * 4 + 8);
        assert!(matches!(decode_base64(&big), Err(MediaError::TooLarge(_))));
    }

    #[test]
    fn data_urls_are_jpeg_base64() {
        assert_eq!(data_url(b"hello"), "data:image/jpeg;base64,aGVsbG8=");
    }

    #[test]
    fn debug_output_never_holds_the_data() {
        let shown = format!("{:?}", ImageSource::Base64("c2VjcmV0".into()));
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
        let shown = format!("{:?}", ImageSource::Url("https://x/?token=s3cret".into()));
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
