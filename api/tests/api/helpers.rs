//! `spawn_app()` and typed helpers, so tests read like what a user does.

use std::time::Duration;

use herald_api::{Application, Role, Settings};
use herald_gateway::simulator::{self, RunningSimulator, SimulatorConfig};
use herald_scheduler::DispatchConfig;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub sim: RunningSimulator,
    pub pool: PgPool,
    pub db_url: String,
    app: Option<Application>,
}

/// A signed-up user of a fresh tenant.
#[derive(Clone)]
pub struct Account {
    pub token: String,
    pub tenant_id: String,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(SimulatorConfig::default()).await
}

/// Logs go to the test's captured output (shown when it fails); `RUST_LOG` sets the level.
fn init_tracing() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

pub async fn spawn_app_with(sim_config: SimulatorConfig) -> TestApp {
    spawn(sim_config, None, fast_dispatch()).await
}

/// Herald with a deliberately slow dispatch (small batches, little concurrency), so a test can
/// act in the middle of a campaign.
pub async fn spawn_app_slow_dispatch(sim_config: SimulatorConfig) -> TestApp {
    let dispatch = DispatchConfig {
        batch_size: 10,
        concurrency: 2,
        ..fast_dispatch()
    };
    spawn(sim_config, None, dispatch).await
}

fn fast_dispatch() -> DispatchConfig {
    DispatchConfig {
        idle_poll: Duration::from_millis(20),
        ..DispatchConfig::default()
    }
}

/// Herald pointed at a gateway URL where nothing answers (the simulator still runs, unused).
pub async fn spawn_app_with_dead_gateway() -> TestApp {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    spawn(SimulatorConfig::default(), Some(url), fast_dispatch()).await
}

/// Herald with settings changed by `configure` (NATS, SSE keep-alive, ...).
pub async fn spawn_app_with_settings(
    sim_config: SimulatorConfig,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    init_tracing();
    let sim = simulator::spawn("127.0.0.1:0", sim_config)
        .await
        .expect("simulator starts");
    let db_url = herald_migrations::testing::fresh_database_url()
        .await
        .expect("fresh database");
    let mut settings = Settings::for_tests(&db_url, &sim.base_url());
    configure(&mut settings);
    let app = Application::build_with_dispatch(settings, Role::All, fast_dispatch())
        .await
        .expect("herald starts");
    let addr = app.addr().expect("serves http");
    TestApp {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        pool: app.pool().clone(),
        db_url,
        sim,
        app: Some(app),
    }
}

async fn spawn(
    sim_config: SimulatorConfig,
    gateway_url: Option<String>,
    dispatch: DispatchConfig,
) -> TestApp {
    init_tracing();
    let sim = simulator::spawn("127.0.0.1:0", sim_config)
        .await
        .expect("simulator starts");
    let db_url = herald_migrations::testing::fresh_database_url()
        .await
        .expect("fresh database");
    let gateway_url = gateway_url.unwrap_or_else(|| sim.base_url());
    let settings = Settings::for_tests(&db_url, &gateway_url);
    let app = Application::build_with_dispatch(settings, Role::All, dispatch)
        .await
        .expect("herald starts");
    let addr = app.addr().expect("serves http");
    TestApp {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        pool: app.pool().clone(),
        db_url,
        sim,
        app: Some(app),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// GET and parse the JSON answer (whatever the status).
    pub async fn get_json(&self, path: &str, token: &str) -> Value {
        self.get(path, token)
            .await
            .json()
            .await
            .expect("a JSON answer")
    }

    /// A POST without credentials (register, login).
    pub async fn post_public(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// A POST without a body (pause, resume, cancel).
    pub async fn post_empty(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn patch(&self, path: &str, token: &str, body: &Value) -> reqwest::Response {
        self.client
            .patch(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn delete(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post_raw(&self, path: &str, token: &str, body: &'static str) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn register(&self, email: &str) -> Account {
        let res = self
            .client
            .post(self.url("/api/v1/auth/register"))
            .json(&json!({"email": email, "password": "correct horse battery"}))
            .send()
            .await
            .expect("request sent");
        assert_eq!(res.status(), StatusCode::CREATED);
        let body: Value = res.json().await.expect("json");
        Account {
            token: body["access_token"].as_str().expect("token").to_string(),
            tenant_id: body["tenant_id"].as_str().expect("tenant").to_string(),
        }
    }

    /// Links a session with a simulator user token; returns the session id.
    pub async fn link_session(&self, account: &Account, gateway_token: &str) -> String {
        let res = self
            .post(
                "/api/v1/sessions",
                &account.token,
                &json!({"name": "main number", "gateway_token": gateway_token}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let body: Value = res.json().await.expect("json");
        body["id"].as_str().expect("id").to_string()
    }

    pub async fn create_template(&self, account: &Account, body: &str) -> String {
        let res = self
            .post(
                "/api/v1/templates",
                &account.token,
                &json!({"name": "promo", "type": "text", "body": body}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let body: Value = res.json().await.expect("json");
        body["id"].as_str().expect("id").to_string()
    }

    /// A tenant with a linked session and a template: (account, session_id, template_id).
    pub async fn ready_tenant(&self, email: &str, template: &str) -> (Account, String, String) {
        let account = self.register(email).await;
        let session = self.link_session(&account, &format!("token-{email}")).await;
        let template = self.create_template(&account, template).await;
        (account, session, template)
    }

    /// Polls the campaign until `done(campaign)` or the timeout; returns the last state.
    pub async fn wait_campaign(
        &self,
        account: &Account,
        id: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let res = self
                .get(&format!("/api/v1/campaigns/{id}"), &account.token)
                .await;
            assert_eq!(res.status(), StatusCode::OK);
            let body: Value = res.json().await.expect("json");
            if done(&body) || tokio::time::Instant::now() >= deadline {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every message the simulator accepted, as `(phone, text, id)`.
    pub async fn sim_messages(&self) -> Vec<(String, String, String)> {
        let res = self
            .client
            .get(format!("{}/sim/messages?limit=100000", self.sim.base_url()))
            .send()
            .await
            .expect("request sent");
        let body: Value = res.json().await.expect("json");
        body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|m| {
                (
                    m["phone"].as_str().unwrap_or_default().to_string(),
                    m["text"].as_str().unwrap_or_default().to_string(),
                    m["id"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// A second Herald instance (all roles) on the same database and gateway.
    pub async fn second_instance(&self) -> Application {
        let settings = Settings::for_tests(&self.db_url, &self.sim.base_url());
        Application::build_with_dispatch(settings, Role::All, fast_dispatch())
            .await
            .expect("second instance starts")
    }

    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await;
        }
        self.sim.stop().await;
    }
}

/// `n` distinct valid Indonesian mobile numbers in E.164 digits.
pub fn phones(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("62812{:08}", 10_000_000 + i))
        .collect()
}

/// Asserts the error envelope and returns its code.
pub async fn error_code(res: reqwest::Response, status: StatusCode) -> (String, Value) {
    assert_eq!(res.status(), status);
    let body: Value = res.json().await.expect("error body is JSON");
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error envelope in {body}"))
        .to_string();
    assert!(body["error"]["message"].is_string(), "{body}");
    (code, body)
}
