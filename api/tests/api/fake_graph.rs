//! A stand-in for Meta's Graph API (outside Herald, so faked): `GET /{phone_number_id}` answers
//! 200 `{"id": ...}` only for the (id, access token) pairs it was given, 400 with Meta's error
//! shape otherwise. A real HTTP server on 127.0.0.1:0, a few lines of HTTP/1.1.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

pub struct FakeGraph {
    pub url: String,
    requests: Arc<AtomicUsize>,
}

impl FakeGraph {
    /// Requests the fake answered so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// A Graph API that accepts exactly `grants` (phone number id, access token).
pub async fn spawn(grants: &[(&str, &str)]) -> FakeGraph {
    let grants: Arc<HashSet<(String, String)>> = Arc::new(
        grants
            .iter()
            .map(|(id, token)| (id.to_string(), token.to_string()))
            .collect(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/v21.0", listener.local_addr().expect("addr"));
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let grants = grants.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                let Ok(Some(request_line)) = lines.next_line().await else {
                    return;
                };
                let mut token = String::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        if name.eq_ignore_ascii_case("authorization") {
                            token = value.trim().trim_start_matches("Bearer ").to_string();
                        }
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let path = request_line.split(' ').nth(1).unwrap_or_default();
                let id = path.rsplit('/').next().unwrap_or_default().to_string();
                let (status, body) = if grants.contains(&(id.clone(), token)) {
                    (
                        "200 OK",
                        serde_json::json!({"id": id, "display_phone_number": "+1 555-0100",
                                           "verified_name": "Test Shop"}),
                    )
                } else {
                    (
                        "400 Bad Request",
                        serde_json::json!({"error": {"message": "Invalid OAuth access token - Cannot parse access token",
                                                     "type": "OAuthException", "code": 190}}),
                    )
                };
                let body = body.to_string();
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = write.write_all(answer.as_bytes()).await;
                let _ = write.shutdown().await;
            });
        }
    });
    FakeGraph { url, requests }
}
