//! Phase 5: webhook receipt ingestion (target in docs/design.md: ≥ 5,000 receipts/s accepted, p99 ≤ 50 ms,
//! all applied within 2 s of the last; projector lag p99 ≤ 250 ms under that load).
//!
//! The dispatch phase's campaign has every recipient `sent` with its message id in
//! `message_index`. This phase posts, for every one of them, a `Delivered` and a `Read` receipt to
//! `POST /api/v1/webhooks/wuzapi/{session}` exactly as WuzAPI does (JSON encoding, signed with the
//! session's HMAC key), in a shuffled order (so many `Read`s arrive before their `Delivered`) with a
//! share of duplicates. By default the posts go out on schedule, `--receipt-rate` per second,
//! whether or not earlier ones were answered (a gateway posts each event as it happens), and a
//! post's latency counts from when it was due; with `--receipt-rate 0` it is a closed loop of
//! `--receipt-concurrency` posts in flight. It measures each post's latency (the 200 means
//! "stored in the inbox"), the answers per second, and how long after the last 200 the read model
//! shows every recipient `read`; the campaign projector's lag is sampled throughout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use herald_gateway::webhook::{self, Encoding, ReceiptState};
use rand::seq::SliceRandom;
use rand::Rng;
use sqlx::PgPool;
use uuid::Uuid;

use super::{machine_cpu_ticks, percentile, progress, Args, Report, Tenant, POLL, PROJECTOR};

const TARGET_RECEIPTS_PER_SEC: f64 = 5_000.0;
const TARGET_RECEIPT_P99_MS: f64 = 50.0;
const TARGET_APPLIED_SECS: f64 = 2.0;

/// One prepared webhook post: the whole HTTP/1.1 request, head and body, as it goes on the wire.
struct Post {
    request: Vec<u8>,
}

/// The load generator's HTTP client: HTTP/1.1 over kept-alive loopback connections, writing
/// prepared requests and reading just the status line and the body's length.
///
/// The benchmark runs on the machine it measures, so its client's CPU is taken from Herald.
/// reqwest cost about 11 % of the machine's CPU at 5,250 posts/s (`perf record -a`): header maps,
/// URL parsing and its connection pool for every post. A real gateway posts from its own machine;
/// what is left here (a write and a read on a socket) is about what any sender costs.
struct Poster {
    addr: std::net::SocketAddr,
    idle: std::sync::Mutex<Vec<tokio::net::TcpStream>>,
}

impl Poster {
    async fn new(base: &str) -> anyhow::Result<Self> {
        let url = reqwest::Url::parse(base)?;
        let host = url
            .host_str()
            .ok_or_else(|| anyhow::anyhow!("no host in {base}"))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| anyhow::anyhow!("no port in {base}"))?;
        let addr = tokio::net::lookup_host((host, port))
            .await?
            .next()
            .ok_or_else(|| anyhow::anyhow!("{host} does not resolve"))?;
        Ok(Poster {
            addr,
            idle: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Prepares a post to `path`.
    fn prepare(
        host: &str,
        path: &str,
        content_type: &str,
        signature: Option<&str>,
        body: &[u8],
    ) -> Post {
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n",
            body.len()
        );
        if let Some(sig) = signature {
            head.push_str(&format!("{}: {sig}\r\n", webhook::SIGNATURE_HEADER));
        }
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        Post { request }
    }

    /// Sends one request and returns the answer's status. A kept-alive connection the server has
    /// closed meanwhile is replaced once.
    async fn post(&self, post: &Post) -> std::io::Result<u16> {
        let reused = self.take();
        let fresh = reused.is_none();
        let conn = match reused {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        let (status, conn) = match exchange(conn, &post.request).await {
            Err(_) if !fresh => exchange(self.connect().await?, &post.request).await?,
            answer => answer?,
        };
        if let Some(conn) = conn {
            self.give_back(conn);
        }
        Ok(status)
    }

    fn take(&self) -> Option<tokio::net::TcpStream> {
        self.idle.lock().ok().and_then(|mut idle| idle.pop())
    }

    fn give_back(&self, conn: tokio::net::TcpStream) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
    }

    async fn connect(&self) -> std::io::Result<tokio::net::TcpStream> {
        let conn = tokio::net::TcpStream::connect(self.addr).await?;
        conn.set_nodelay(true)?;
        Ok(conn)
    }
}

/// Writes a request and reads its answer: the status, and the connection back when it may be
/// used again.
async fn exchange(
    mut conn: tokio::net::TcpStream,
    request: &[u8],
) -> std::io::Result<(u16, Option<tokio::net::TcpStream>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    conn.write_all(request).await?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    // the head
    let head_end = loop {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err(bad("answer head over 64 KiB"));
        }
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| bad("answer head not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let (mut length, mut chunked, mut close) = (None, false, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    // the body, read to its end (its content does not matter here)
    let mut body = buf.split_off(head_end);
    let done = |body: &Vec<u8>| match (length, chunked) {
        (Some(n), _) => body.len() >= n,
        (None, true) => body.ends_with(b"0\r\n\r\n"),
        (None, false) => false,
    };
    if length.is_none() && !chunked {
        // no length: the body ends when the server closes the connection
        loop {
            if conn.read(&mut chunk).await? == 0 {
                return Ok((status, None));
            }
        }
    }
    while !done(&body) {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok((status, (!close).then_some(conn)))
}

/// The projector lag (ms) right now: age of the oldest event it has not applied yet.
async fn projector_lag_ms(pool: &PgPool) -> anyhow::Result<f64> {
    let lag: Option<f64> = sqlx::query_scalar(
        "WITH cp AS (SELECT tx_id, global_position FROM projector_checkpoints WHERE name = $1)
         SELECT extract(epoch FROM clock_timestamp() - min(e.recorded_at))::float8
           FROM events e, cp
          WHERE (e.tx_id, e.global_position) > (cp.tx_id::text::xid8, cp.global_position)",
    )
    .bind(PROJECTOR)
    .fetch_one(pool)
    .await?;
    Ok(lag.unwrap_or(0.0) * 1000.0)
}

pub(super) async fn phase_receipts(
    args: &Args,
    pool: &PgPool,
    t: &Tenant,
    campaign: Uuid,
    report: &mut Report,
) -> anyhow::Result<()> {
    let ids: Vec<(String, String)> = sqlx::query_as(
        "SELECT message_id, split_part(delivery_id, ':', 2) FROM message_index
          WHERE delivery_id LIKE $1",
    )
    .bind(format!("{campaign}:%"))
    .fetch_all(pool)
    .await?;
    let n = ids.len();
    anyhow::ensure!(n > 0, "the dispatch campaign has no message ids to receipt");
    let key: Option<String> =
        sqlx::query_scalar("SELECT hmac_key FROM session_credentials WHERE session_id = $1")
            .bind(t.session_id)
            .fetch_one(pool)
            .await?;
    let key = key.ok_or_else(|| anyhow::anyhow!("the bench session has no HMAC key"))?;

    // Every message gets Delivered and Read; a share of them is posted twice; all shuffled.
    let mut rng = rand::thread_rng();
    let mut plan: Vec<(usize, ReceiptState)> = Vec::with_capacity(n * 2);
    for i in 0..n {
        plan.push((i, ReceiptState::Delivered));
        plan.push((i, ReceiptState::Read));
    }
    let duplicates = (plan.len() as f64 * args.receipt_duplicates).round() as usize;
    for _ in 0..duplicates {
        let pick = plan[rng.gen_range(0..plan.len())];
        plan.push(pick);
    }
    plan.shuffle(&mut rng);
    let now = chrono::Utc::now();
    let path = format!("/api/v1/webhooks/wuzapi/{}", t.session_id);
    let host = t.client.base.trim_start_matches("http://").to_string();
    let posts: Vec<Post> = plan
        .iter()
        .map(|&(i, state)| {
            let (message_id, phone) = &ids[i];
            let chat = format!("{phone}@s.whatsapp.net");
            let event = webhook::receipt_event(state, &[message_id.as_str()], &chat, now);
            let post =
                webhook::encode_post(&event, Encoding::Json, "1", "bench number", Some(&key));
            Poster::prepare(
                &host,
                &path,
                post.content_type,
                post.signature.as_deref(),
                &post.body,
            )
        })
        .collect();
    let total = posts.len();
    let open_loop = args.receipt_rate > 0.0;
    let load = if open_loop {
        format!("{:.0} posts/s on schedule", args.receipt_rate)
    } else {
        format!("{} in flight", args.receipt_concurrency)
    };
    progress(format!(
        "receipts: {total} webhook posts ({n} Delivered + {n} Read + {duplicates} duplicates, shuffled), {load}"
    ));

    // Lag sampler, running while the receipts go in and until they are applied.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (pool, stop) = (pool.clone(), stop.clone());
        tokio::spawn(async move {
            let mut lags = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(lag) = projector_lag_ms(&pool).await {
                    lags.push(lag);
                }
                tokio::time::sleep(POLL).await;
            }
            lags
        })
    };

    let poster = Arc::new(Poster::new(&t.client.base).await?);
    let checkpoints_before = postgres_checkpoints(pool).await?;
    let cpu_before = machine_cpu_ticks();
    let started = Instant::now();
    let results: Vec<Result<(u16, f64, Instant), String>> = if open_loop {
        // Open loop: post i is due at i / rate, sent then whether or not earlier posts were
        // answered, and its latency counts from when it was due (so a sender held up by a slow
        // Herald does not hide the wait).
        let mut sent = Vec::with_capacity(total);
        for (i, post) in posts.into_iter().enumerate() {
            let due = started + Duration::from_secs_f64(i as f64 / args.receipt_rate);
            tokio::time::sleep_until(due.into()).await;
            sent.push(tokio::spawn(send(poster.clone(), post, due)));
        }
        let mut results = Vec::with_capacity(total);
        for task in sent {
            results.push(task.await.unwrap_or_else(|e| Err(e.to_string())));
        }
        results
    } else {
        futures::stream::iter(posts)
            .map(|post| send(poster.clone(), post, Instant::now()))
            .buffer_unordered(args.receipt_concurrency)
            .collect()
            .await
    };
    let accepted_in = started.elapsed();
    let last_accepted = Instant::now();

    let mut latencies = Vec::with_capacity(total);
    // posts over the latency target, by the second of the phase they were answered in: tells a
    // stall (a few seconds with many) from a rate the machine cannot keep (slow posts throughout)
    let mut slow_by_second: std::collections::BTreeMap<u64, usize> = Default::default();
    for (_, ms, at) in results.iter().flatten() {
        if *ms > TARGET_RECEIPT_P99_MS {
            *slow_by_second
                .entry(at.duration_since(started).as_secs())
                .or_default() += 1;
        }
    }
    let mut refused = 0usize;
    let mut first_error = None;
    let (mut first_answer, mut last_answer) = (None::<Instant>, None::<Instant>);
    for r in &results {
        if let Ok((_, _, at)) = r {
            first_answer = Some(first_answer.map_or(*at, |f| f.min(*at)));
            last_answer = Some(last_answer.map_or(*at, |l| l.max(*at)));
        }
        match r {
            Ok((200, ms, _)) => latencies.push(*ms),
            Ok((status, _, _)) => {
                refused += 1;
                first_error.get_or_insert_with(|| format!("answered {status}"));
            }
            Err(e) => {
                refused += 1;
                first_error.get_or_insert_with(|| e.clone());
            }
        }
    }

    // Until the read model shows every recipient read.
    let timeout = Duration::from_secs(args.timeout_secs);
    let mut applied: Option<Duration> = None;
    let mut last_read = 0i64;
    while last_accepted.elapsed() < timeout {
        last_read = sqlx::query_scalar("SELECT count_read FROM campaigns WHERE id = $1")
            .bind(campaign)
            .fetch_one(pool)
            .await?;
        if last_read >= n as i64 {
            applied = Some(last_accepted.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu_after = machine_cpu_ticks();
    let checkpoints = postgres_checkpoints(pool).await? - checkpoints_before;
    stop.store(true, Ordering::Relaxed);
    let mut lags = sampler.await.unwrap_or_default();

    report.section(&format!(
        "Receipts: {total} signed WuzAPI webhook posts for the dispatch campaign ({n} recipients × Delivered + Read, {duplicates} duplicates, shuffled; {load})"
    ));
    report.check(
        refused == 0,
        format!(
            "{refused} receipt posts were not answered 200 (first: {})",
            first_error.unwrap_or_default()
        ),
    );
    // answers per second from the first answer to the last (in the open loop this is the offered
    // rate when Herald keeps up, less when it falls behind)
    let window = match (first_answer, last_answer) {
        (Some(first), Some(last)) if last > first => last - first,
        _ => accepted_in,
    };
    let rate = (latencies.len().saturating_sub(1)) as f64 / window.as_secs_f64();
    report.target(
        "receipts accepted (200 = stored in the inbox)",
        format!("{rate:.0}/s"),
        "≥ 5,000/s",
        rate >= TARGET_RECEIPTS_PER_SEC,
    );
    latencies.sort_by(|a, b| a.total_cmp(b));
    let p99 = percentile(&latencies, 99.0);
    report.target(
        if open_loop {
            "  latency of one post from when it was due, p99"
        } else {
            "  latency of one post, p99"
        },
        format!("{p99:.1} ms"),
        "≤ 50 ms",
        p99 <= TARGET_RECEIPT_P99_MS,
    );
    report.row(
        "  p50 / max",
        format!(
            "{:.1} / {:.1} ms",
            percentile(&latencies, 50.0),
            latencies.last().copied().unwrap_or(0.0)
        ),
        "",
        None,
    );
    if !slow_by_second.is_empty() {
        let mut worst: Vec<(u64, usize)> = slow_by_second.into_iter().collect();
        worst.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let shown: Vec<String> = worst
            .iter()
            .take(5)
            .map(|(second, n)| format!("{n} in second {second}"))
            .collect();
        report.note(format!(
            "posts over {TARGET_RECEIPT_P99_MS} ms, worst seconds of {} with any: {}",
            worst.len(),
            shown.join(", ")
        ));
    }
    match applied {
        Some(after) => report.target(
            "last 200 → read model shows every recipient read",
            format!("{:.2} s", after.as_secs_f64()),
            "≤ 2 s",
            after.as_secs_f64() <= TARGET_APPLIED_SECS,
        ),
        None => {
            report.check(
                false,
                format!("after {timeout:?} only {last_read} of {n} recipients show read"),
            );
            report.row(
                "all applied within the timeout",
                "no".into(),
                "",
                Some(false),
            );
        }
    }
    lags.sort_by(|a, b| a.total_cmp(b));
    report.target(
        &format!(
            "projector lag under the receipt load, p99 of {} samples",
            lags.len()
        ),
        format!("{:.0} ms", percentile(&lags, 99.0)),
        "≤ 250 ms",
        percentile(&lags, 99.0) <= super::TARGET_LAG_P99_MS,
    );

    // What the phase cost the machine, to compare runs on a machine whose speed varies.
    if let (Some((busy0, all0)), Some((busy1, all1))) = (cpu_before, cpu_after) {
        // /proc/stat counts in USER_HZ, 100 per second on Linux
        let busy_ms = (busy1.saturating_sub(busy0)) as f64 * 10.0;
        let share = 100.0 * (busy1.saturating_sub(busy0)) as f64
            / (all1.saturating_sub(all0)).max(1) as f64;
        report.row(
            "  machine CPU per 1,000 posts, first post → all read (all processes)",
            format!("{:.0} ms", busy_ms * 1000.0 / total as f64),
            "",
            None,
        );
        report.row(
            "  machine busy, first post → all read",
            format!("{share:.0} %"),
            "",
            None,
        );
    }
    report.row(
        "  Postgres checkpoints that started meanwhile",
        checkpoints.to_string(),
        "",
        None,
    );

    // Every recipient ends read with both times, and the inbox is drained.
    let (with_both, inbox_left): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM deliveries
                  WHERE campaign_id = $1 AND status = 'read'
                    AND delivered_at IS NOT NULL AND read_at IS NOT NULL),
                (SELECT count(*) FROM webhook_inbox_status WHERE processed_at IS NULL)",
    )
    .bind(campaign)
    .fetch_one(pool)
    .await?;
    report.row(
        "recipients read with delivered_at and read_at / inbox rows unprocessed",
        format!("{with_both} / {inbox_left}"),
        &format!("= {n} / 0"),
        Some(with_both == n as i64 && inbox_left == 0),
    );
    report.check(
        with_both == n as i64,
        format!("{with_both} of {n} recipients are read with both times"),
    );
    Ok(())
}

/// Checkpoints Postgres has started since its statistics were reset (timed and requested).
async fn postgres_checkpoints(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter")
            .fetch_one(pool)
            .await?,
    )
}

/// Posts one receipt; its latency counts from `from` (when it was due, or sent).
async fn send(
    poster: Arc<Poster>,
    post: Post,
    from: Instant,
) -> Result<(u16, f64, Instant), String> {
    match poster.post(&post).await {
        Ok(status) => Ok((
            status,
            from.elapsed().as_secs_f64() * 1000.0,
            Instant::now(),
        )),
        Err(e) => Err(e.to_string()),
    }
}
