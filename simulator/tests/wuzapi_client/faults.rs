//! Failure classification: injected faults, garbage answers, unreachable and stopped gateways.

use std::time::Duration;

use herald_gateway::{Gateway, GatewayError, WuzapiClient};
use herald_simulator::SimulatorConfig;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

#[tokio::test]
async fn simulated_failures_are_transient_and_not_recorded() {
    let t = TestSim::spawn(SimulatorConfig {
        error_rate: 1.0,
        seed: Some(1),
        ..SimulatorConfig::default()
    })
    .await;
    let error = t
        .client
        .send(TOKEN, &text("6281234567890", "FAIL01", "x"))
        .await
        .expect_err("every send fails");
    assert_eq!(
        error,
        GatewayError::Transient {
            message: "error sending message: simulated failure".into(),
            retry_after: None,
        }
    );
    let stats = t.stats().await;
    assert_eq!((stats.accepted, stats.failed), (0, 1));
}

#[tokio::test]
async fn rate_limits_are_transient_with_retry_after() {
    let t = TestSim::spawn(SimulatorConfig {
        rate_limit_rate: 1.0,
        ..SimulatorConfig::default()
    })
    .await;
    let error = t
        .client
        .send(TOKEN, &text("6281234567890", "SLOW01", "x"))
        .await
        .expect_err("every send is rate limited");
    match error {
        GatewayError::Transient { retry_after, .. } => {
            assert_eq!(retry_after, Some(Duration::from_secs(1)));
        }
        other => panic!("expected a transient error, got {other:?}"),
    }
    let stats = t.stats().await;
    assert_eq!((stats.accepted, stats.rate_limited), (0, 1));
}

#[tokio::test]
async fn faults_can_be_changed_at_run_time() {
    let t = TestSim::default().await;
    let (status, config) = t.put_config(json!({"error_rate": 1.0})).await;
    assert_eq!(status, 200);
    assert_eq!(
        config,
        json!({"latency_ms": 0, "error_rate": 1.0, "rate_limit_rate": 0.0,
               "receipts": false, "receipt_delivered_after_ms": 50, "receipt_read_after_ms": 150,
               "receipt_encoding": "form", "receipt_duplicates": false, "receipt_read_first": false})
    );
    let failed = t
        .client
        .send(TOKEN, &text("6281234567890", "RT01", "x"))
        .await;
    assert!(failed.is_err_and(|e| e.is_transient()));

    let (status, _) = t
        .put_config(json!({"error_rate": 0.0, "latency_ms": 30}))
        .await;
    assert_eq!(status, 200);
    let started = std::time::Instant::now();
    t.client
        .send(TOKEN, &text("6281234567890", "RT02", "x"))
        .await
        .expect("faults are off again");
    assert!(started.elapsed() >= Duration::from_millis(30));

    let (status, refused) = t.put_config(json!({"error_rate": 2.0})).await;
    assert_eq!(status, 400);
    assert_eq!(refused["success"], false);
    let (status, _) = t.put_config(json!({"eror_rate": 0.5})).await;
    assert_eq!(status, 400, "unknown keys are refused");
}

#[tokio::test]
async fn a_garbage_2xx_answer_is_transient() {
    // A server that answers every request with a 200 that is not WuzAPI's envelope, the way a
    // misconfigured proxy might.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let server = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = vec![0_u8; 64 * 1024];
                let _ = stream.read(&mut buffer).await;
                let body = "<html>it works</html>";
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    let client = WuzapiClient::new(&format!("http://{addr}/"), None).expect("valid URL");
    let error = client
        .send(TOKEN, &text("6281234567890", "GARBAGE1", "x"))
        .await
        .expect_err("garbage is not an acceptance");
    assert!(error.is_transient(), "{error:?}");
    assert!(error.message().contains("unexpected body"), "{error:?}");
    let status = client.session_status(TOKEN).await;
    assert!(status.is_err_and(|e| e.is_transient()));
    server.abort();
}

#[tokio::test]
async fn an_unreachable_gateway_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    let client = WuzapiClient::new(&format!("http://{addr}"), None).expect("valid URL");
    let error = client
        .send(TOKEN, &text("6281234567890", "DOWN01", "x"))
        .await
        .expect_err("nobody listens");
    assert!(error.is_transient(), "{error:?}");
    assert!(
        error.message().starts_with("gateway unreachable"),
        "{error:?}"
    );
    assert!(error.is_unreachable(), "{error:?}");
}

#[tokio::test]
async fn a_missing_token_is_permanent() {
    let t = TestSim::default().await;
    let error = t
        .client
        .send("", &text("6281234567890", "NOTOKEN1", "x"))
        .await
        .expect_err("no token, no user");
    assert_eq!(error, permanent("unauthorized"));
    assert!(!error.is_unreachable(), "the gateway answered");
}

#[tokio::test]
async fn a_stopped_simulator_stops_answering() {
    let t = TestSim::default().await;
    let base = t.sim.base_url();
    t.sim.stop().await;
    let client = WuzapiClient::new(&base, None).expect("valid URL");
    let error = client.session_status(TOKEN).await.expect_err("stopped");
    assert!(error.is_transient());
}
