//! Shared fixtures: a simulator on a random port with a client for it, and message builders.

use herald_gateway::{GatewayError, MessageContent, OutboundMessage, WuzapiClient};
use herald_simulator::{self as simulator, RunningSimulator, SimStats, SimulatorConfig};
use serde_json::Value;

pub const TOKEN: &str = "user-token-1";
pub const PNG: &str = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

/// A simulator on a random port, a client for it, and a plain HTTP client for `/sim/*`.
pub struct TestSim {
    pub sim: RunningSimulator,
    pub client: WuzapiClient,
    pub http: reqwest::Client,
}

impl TestSim {
    pub async fn spawn(config: SimulatorConfig) -> Self {
        let admin = config.admin_token.clone();
        let sim = simulator::spawn("127.0.0.1:0", config)
            .await
            .expect("simulator binds a random port");
        let client = WuzapiClient::new(&sim.base_url(), admin).expect("valid base URL");
        Self {
            sim,
            client,
            http: reqwest::Client::new(),
        }
    }

    pub async fn default() -> Self {
        Self::spawn(SimulatorConfig {
            seed: Some(42),
            ..SimulatorConfig::default()
        })
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.sim.base_url(), path)
    }

    pub async fn stats(&self) -> SimStats {
        self.get_json("/sim/stats").await.1
    }

    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> (u16, T) {
        let answer = self
            .http
            .get(self.url(path))
            .header("Token", TOKEN)
            .send()
            .await
            .expect("simulator answers");
        let status = answer.status().as_u16();
        (status, answer.json().await.expect("JSON answer"))
    }

    pub async fn post_json(&self, path: &str, body: Value) -> (u16, Value) {
        let answer = self
            .http
            .post(self.url(path))
            .header("Token", TOKEN)
            .json(&body)
            .send()
            .await
            .expect("simulator answers");
        let status = answer.status().as_u16();
        (status, answer.json().await.expect("JSON answer"))
    }

    pub async fn put_config(&self, body: Value) -> (u16, Value) {
        let answer = self
            .http
            .put(self.url("/sim/config"))
            .json(&body)
            .send()
            .await
            .expect("simulator answers");
        let status = answer.status().as_u16();
        (status, answer.json().await.expect("JSON answer"))
    }
}

pub fn text(phone: &str, id: &str, body: &str) -> OutboundMessage {
    OutboundMessage {
        phone: phone.to_owned(),
        message_id: id.to_owned(),
        content: MessageContent::Text {
            body: body.to_owned(),
        },
    }
}

pub fn image(phone: &str, id: &str, data_url: &str) -> OutboundMessage {
    OutboundMessage {
        phone: phone.to_owned(),
        message_id: id.to_owned(),
        content: MessageContent::Image {
            data_url: data_url.to_owned(),
            caption: Some("promo".to_owned()),
        },
    }
}

/// Awaits spawned tasks in order (the crate does not depend on `futures`).
pub async fn join_all<T>(tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let tasks: Vec<_> = tasks.collect();
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.expect("task ran"));
    }
    results
}

/// The error WuzAPI's 4xx answers become.
pub fn permanent(message: &str) -> GatewayError {
    GatewayError::Permanent {
        message: message.to_owned(),
    }
}
