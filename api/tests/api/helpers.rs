//! `spawn_app()` and typed helpers, so tests read like what a user does.

use std::time::Duration;

use herald_api::{Application, Role, Settings};
use herald_scheduler::DispatchConfig;
use herald_simulator::{self as simulator, RunningSimulator, SimulatorConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub sim: RunningSimulator,
    pub pool: PgPool,
    pub db_url: String,
    /// What this app was built with (a second instance gets the same).
    pub settings: Settings,
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

/// The operator's token of apps made by [`spawn_app_configured`].
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// Herald with settings changed by `configure` (plan, admin token, quota window, ...).
pub async fn spawn_app_configured(configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_configured(SimulatorConfig::default(), None, fast_dispatch(), configure).await
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

/// Herald with `HERALD_WUZAPI_ADMIN_TOKEN` set to `admin_token`, so it can create WuzAPI users;
/// the simulator checks its own `sim_config.admin_token`. `dead_gateway`: Herald points at a
/// gateway URL where nothing answers.
pub async fn spawn_app_with_admin_token(
    sim_config: SimulatorConfig,
    admin_token: &str,
    dead_gateway: bool,
) -> TestApp {
    let gateway_url = dead_gateway.then(|| {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", closed.local_addr().expect("addr"))
    });
    spawn_configured(sim_config, gateway_url, fast_dispatch(), |settings| {
        settings.wuzapi_admin_token = Some(herald_api::config::Secret::new(admin_token));
    })
    .await
}

/// Herald and a simulator both configured (NATS, SSE keep-alive, receipts, ...).
pub async fn spawn_app_with_sim_and_settings(
    sim_config: SimulatorConfig,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    spawn_configured(sim_config, None, fast_dispatch(), configure).await
}

async fn spawn(
    sim_config: SimulatorConfig,
    gateway_url: Option<String>,
    dispatch: DispatchConfig,
) -> TestApp {
    spawn_configured(sim_config, gateway_url, dispatch, |_| {}).await
}

async fn spawn_configured(
    sim_config: SimulatorConfig,
    gateway_url: Option<String>,
    dispatch: DispatchConfig,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    init_tracing();
    let sim = simulator::spawn("127.0.0.1:0", sim_config)
        .await
        .expect("simulator starts");
    let db_url = herald_migrations::testing::fresh_database_url()
        .await
        .expect("fresh database");
    let gateway_url = gateway_url.unwrap_or_else(|| sim.base_url());
    let mut settings = Settings::for_tests(&db_url, &gateway_url);
    configure(&mut settings);
    let app = Application::build_with_dispatch(settings.clone(), Role::All, dispatch)
        .await
        .expect("herald starts");
    let addr = app.addr().expect("serves http");
    TestApp {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        pool: app.pool().clone(),
        db_url,
        sim,
        settings,
        app: Some(app),
    }
}

impl TestApp {
    /// The API's shared pools (their counters: what is in use, waiting, refused).
    pub fn pools(&self) -> &herald_api::pools::Pools {
        self.app
            .as_ref()
            .and_then(|app| app.pools())
            .expect("this app serves HTTP")
    }

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

    /// Links a session with a simulator user token, unpaced (full speed); returns its id.
    pub async fn link_session(&self, account: &Account, gateway_token: &str) -> String {
        self.link_session_paced(account, gateway_token, 0, 0).await
    }

    /// Links a session with its pacing; returns the session id.
    pub async fn link_session_paced(
        &self,
        account: &Account,
        gateway_token: &str,
        min_ms: u64,
        max_ms: u64,
    ) -> String {
        let res = self
            .post(
                "/api/v1/sessions",
                &account.token,
                &json!({"name": "main number", "gateway_token": gateway_token,
                        "pacing": {"min_interval_ms": min_ms, "max_interval_ms": max_ms}}),
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

    /// `POST /api/v1/campaigns` with `body`, which must answer 201; the new campaign's id.
    pub async fn create_campaign(&self, account: &Account, body: &Value) -> String {
        let res = self.post("/api/v1/campaigns", &account.token, body).await;
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

    /// A request with the operator's `X-Admin-Token`.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .request(method, self.url(path))
            .header("x-admin-token", token);
        if let Some(body) = body {
            req = req.json(body);
        }
        req.send().await.expect("request sent")
    }

    /// The operator sets a tenant's plan (needs an app with [`ADMIN_TOKEN`]).
    pub async fn set_plan(&self, tenant_id: &str, body: &Value) -> Value {
        let res = self
            .admin(
                reqwest::Method::PUT,
                &format!("/api/v1/admin/tenants/{tenant_id}/plan"),
                ADMIN_TOKEN,
                Some(body),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.expect("json")
    }

    /// Every message the simulator accepted, as `(phone, at)` in the order received.
    pub async fn sim_message_times(&self) -> Vec<(String, chrono::DateTime<chrono::Utc>)> {
        let res = self
            .client
            .get(format!("{}/sim/messages?limit=100000", self.sim.base_url()))
            .send()
            .await
            .expect("request sent");
        let body: Value = res.json().await.expect("json");
        let mut out: Vec<(String, chrono::DateTime<chrono::Utc>)> = body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|m| {
                let at = m["at"].as_str().expect("at");
                (
                    m["phone"].as_str().unwrap_or_default().to_string(),
                    chrono::DateTime::parse_from_rfc3339(at)
                        .expect("rfc3339")
                        .with_timezone(&chrono::Utc),
                )
            })
            .collect();
        out.sort_by_key(|(_, at)| *at);
        out
    }

    /// A second Herald instance (all roles) on the same database and gateway.
    pub async fn second_instance(&self) -> Application {
        // the same plan, window, admin token and JWT key: a token works on both
        let mut settings = Settings::for_tests(&self.db_url, &self.sim.base_url());
        settings.default_plan = self.settings.default_plan.clone();
        settings.admin_token = self.settings.admin_token.clone();
        settings.quota_window_secs = self.settings.quota_window_secs;
        settings.jwt_secret = self.settings.jwt_secret.clone();
        Application::build_with_dispatch(settings, Role::All, fast_dispatch())
            .await
            .expect("second instance starts")
    }

    /// Herald stops and starts again on the same database and gateway (a new process: every
    /// in-memory cache is gone). The base URL changes; the settings stay.
    pub async fn restart(&mut self) {
        self.restart_as(Role::All).await;
    }

    /// [`TestApp::restart`] as a process of one role only (`Role::Api`: no projectors, no
    /// workers, as when they run in another process).
    pub async fn restart_as(&mut self, role: Role) {
        if let Some(app) = self.app.take() {
            app.stop().await;
        }
        let app = Application::build_with_dispatch(self.settings.clone(), role, fast_dispatch())
            .await
            .expect("herald starts again");
        self.base = format!("http://{}", app.addr().expect("serves http"));
        self.pool = app.pool().clone();
        self.app = Some(app);
    }

    /// Waits until projector `name` has applied every event stored so far.
    pub async fn wait_projected(&self, name: &str) {
        let newest: Option<(i64, i64)> = sqlx::query_as(
            "SELECT tx_id::text::bigint, global_position FROM events
              ORDER BY tx_id DESC, global_position DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .expect("events");
        let Some(newest) = newest else { return };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let at: Option<(i64, i64)> = sqlx::query_as(
                "SELECT tx_id, global_position FROM projector_checkpoints WHERE name = $1",
            )
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .expect("checkpoint");
            if at.is_some_and(|at| at >= newest) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "projector {name} did not catch up: {at:?} < {newest:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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
