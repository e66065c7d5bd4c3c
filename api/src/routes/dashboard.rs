//! The dashboard: the built web app (`web/`, docs/dashboard.md) served from a directory on disk
//! (`HERALD_WEB_DIR`), so building and testing the Rust side never needs Node.
//!
//! - `GET /` and every client-side route (a path whose last segment has no dot) answer
//!   `index.html` with `Cache-Control: no-cache`;
//! - files beside it are served as they are; Vite's hashed files under `assets/` are immutable
//!   and cached for a year;
//! - paths under `/api`, `/health`, `/metrics` and `/docs` that no route took stay a JSON 404;
//! - a path with anything but plain name characters (`%`, `\`, a segment starting with a dot,
//!   so no `..` and no encoded slash) is a 404 without touching the disk;
//! - when the directory holds no `index.html`, `/` answers a short page saying how to build it.

use std::path::{Path, PathBuf};

use salvo::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use salvo::http::{HeaderValue, StatusCode};
use salvo::prelude::*;

use crate::error::ApiError;
use crate::state::AppState;

/// The policy of every dashboard answer: nothing from outside the machine. Images may be
/// `data:` (QR codes, previews of a chosen file) and `blob:`; styles may be inline because the
/// component library sets CSS variables in a `<style>` element (decision 0047).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data: blob:; \
     style-src 'self' 'unsafe-inline'; connect-src 'self'; object-src 'none'; base-uri 'self'; \
     form-action 'self'; frame-ancestors 'none'";

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const NO_CACHE: &str = "no-cache";

/// Prefixes that belong to the API and operations, never to the app.
const RESERVED: [&str; 4] = ["api", "health", "metrics", "docs"];

const NOT_BUILT: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>Herald</title></head><body>\n<h1>Herald</h1>\n<p>The dashboard is not built. Build it \
with <code>bash scripts/web.sh</code> (it runs <code>npm ci</code> and <code>npm run build</code> \
in <code>web/</code>), or point <code>HERALD_WEB_DIR</code> at a built copy.</p>\n<p>The API \
works without it: <a href=\"/docs\">interactive API documentation</a>.</p>\n</body></html>\n";

/// What a request path asks of the dashboard.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// `index.html`: `/` or a client-side route.
    App,
    /// A file below the web directory (relative, checked segments).
    File(PathBuf),
    /// Not the dashboard's, or not a name it would ever serve.
    NotFound,
}

fn safe_segment(segment: &str) -> bool {
    !segment.is_empty()
        && !segment.starts_with('.')
        && segment.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~' | b'+' | b'@')
        })
}

fn target(path: &str) -> Target {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let mut segments: Vec<&str> = trimmed.split('/').collect();
    if segments.last() == Some(&"") {
        segments.pop(); // a trailing slash
    }
    match segments.first() {
        None => return Target::App,
        Some(first) if RESERVED.contains(first) => return Target::NotFound,
        Some(_) => {}
    }
    if !segments.iter().all(|s| safe_segment(s)) {
        return Target::NotFound;
    }
    let last = segments.last().copied().unwrap_or_default();
    if last.contains('.') {
        Target::File(segments.iter().collect())
    } else {
        Target::App
    }
}

/// Vite names built files `<name>-<hash>.<ext>` under `assets/`; those never change.
fn is_hashed_asset(relative: &Path) -> bool {
    let mut parts = relative.iter();
    if parts.next().and_then(|p| p.to_str()) != Some("assets") {
        return false;
    }
    let Some(stem) = relative.file_stem().and_then(|s| s.to_str()) else {
        return false;
    };
    // the hash is the last 8 characters, after a dash, and may itself hold `-` and `_`
    let bytes = stem.as_bytes();
    bytes.len() > 9
        && bytes[bytes.len() - 9] == b'-'
        && bytes[bytes.len() - 8..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
}

fn content_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
    {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn set_header(res: &mut Response, name: salvo::http::HeaderName, value: &'static str) {
    res.headers_mut()
        .insert(name, HeaderValue::from_static(value));
}

fn security_headers(res: &mut Response) {
    let headers = res.headers_mut();
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
}

/// Reads `relative` below `root`, refusing anything whose real path leaves `root` (a symlink).
async fn read_below(root: &Path, relative: &Path) -> Option<Vec<u8>> {
    let root = tokio::fs::canonicalize(root).await.ok()?;
    let full = tokio::fs::canonicalize(root.join(relative)).await.ok()?;
    if !full.starts_with(&root) || !tokio::fs::metadata(&full).await.ok()?.is_file() {
        return None;
    }
    tokio::fs::read(&full).await.ok()
}

/// `GET` of any path no other route took (pushed last in [`super::router`]).
#[handler]
pub async fn serve(
    req: &mut Request,
    depot: &mut Depot,
    res: &mut Response,
) -> Result<(), ApiError> {
    let state = AppState::from_depot(depot)?;
    let root = state.settings.web_dir.clone();
    match target(req.uri().path()) {
        Target::NotFound => Err(ApiError::NotFound),
        Target::App => {
            security_headers(res);
            set_header(res, CACHE_CONTROL, NO_CACHE);
            set_header(res, CONTENT_TYPE, "text/html; charset=utf-8");
            match read_below(&root, Path::new("index.html")).await {
                Some(body) => res.body(body),
                None => {
                    res.status_code(StatusCode::SERVICE_UNAVAILABLE);
                    res.body(NOT_BUILT)
                }
            };
            Ok(())
        }
        Target::File(relative) => {
            let body = read_below(&root, &relative)
                .await
                .ok_or(ApiError::NotFound)?;
            security_headers(res);
            let cache = if is_hashed_asset(&relative) {
                IMMUTABLE
            } else {
                NO_CACHE
            };
            set_header(res, CACHE_CONTROL, cache);
            set_header(res, CONTENT_TYPE, content_type(&relative));
            res.body(body);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_the_app_files_or_nothing() {
        assert_eq!(target("/"), Target::App);
        assert_eq!(target("/campaigns/3f2a"), Target::App);
        assert_eq!(target("/campaigns/"), Target::App);
        assert_eq!(
            target("/assets/index-AbC123_x.js"),
            Target::File(PathBuf::from("assets/index-AbC123_x.js"))
        );
        for refused in [
            "/api/v1/nope",
            "/api",
            "/health/x",
            "/metrics/x",
            "/docs/x",
            "/../etc/passwd",
            "/assets/../../secret.txt",
            "/assets/..%2f..%2fsecret.txt",
            "/assets%2findex.js",
            "/%2e%2e/secret.txt",
            "/.env",
            "/assets/.hidden.js",
            "/a\\b.js",
            "//etc/passwd",
        ] {
            assert_eq!(target(refused), Target::NotFound, "{refused}");
        }
    }

    #[test]
    fn only_hashed_files_under_assets_are_immutable() {
        assert!(is_hashed_asset(Path::new("assets/index-Dk3nP9aZ.js")));
        assert!(is_hashed_asset(Path::new("assets/index-B_x-91aQ.css")));
        assert!(is_hashed_asset(Path::new("assets/index-BbylS8g-.js")));
        assert!(!is_hashed_asset(Path::new("assets/logo.svg")));
        assert!(!is_hashed_asset(Path::new("index-Dk3nP9aZ.js")));
        assert!(!is_hashed_asset(Path::new("assets/a-b.js")));
    }
}
