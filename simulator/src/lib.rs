//! A WuzAPI-compatible simulator: a real HTTP server answering the subset of WuzAPI that Herald
//! uses (see docs/wuzapi.md), in the same envelope, so the default run, the tests and the benchmark
//! exercise the real [`WuzapiClient`](herald_gateway::WuzapiClient) end to end without WhatsApp.
//!
//! What it adds over WuzAPI, for testing Herald:
//! - fault injection, at start ([`SimulatorConfig`]) or at run time (`PUT /sim/config`): a fixed
//!   latency per send, a fraction of sends answered 500, a fraction answered 429 with
//!   `Retry-After: 1`; a seed makes the draws reproducible;
//! - a ledger of accepted sends with duplicate-`Id` detection (`GET /sim/stats`,
//!   `GET /sim/messages`, `POST /sim/reset`). A rejected (429/5xx) send is not recorded;
//! - receipts posted back like WuzAPI (`Delivered`, then `Read`) to the user's webhook, form or
//!   JSON encoded, signed with the user's HMAC key when it set one, with knobs for duplicates and
//!   read-before-delivered ([`ReceiptSettings`], also `PUT /sim/config`; `GET /sim/receipts`
//!   counts them). Off in [`SimulatorConfig::default`], on in `herald sim`;
//! - `PUT /sim/users/{token}/contacts` sets what that user's `GET /user/contacts` answers (any
//!   JSON, verbatim, so hostile lists can be tested); unseeded users get a small fixed list.
//!
//! Users: any non-empty `Token` header is a user, created on first sight already connected and
//! paired, so anything can send at once. Users made with `POST /admin/users` start disconnected
//! and unpaired, like on WuzAPI: `POST /session/connect` posts a `QR` event to their webhook
//! (and `GET /session/qr` shows the code), then `POST /sim/scan` plays the phone scanning it:
//! the user is paired and `Connected` is posted. `/session/logout` posts `LoggedOut`;
//! `POST /sim/drop` drops the connection and posts `Disconnected`.
//! - `POST /sim/incoming` `{"token", "from", "text"}` plays someone writing to the user's number:
//!   a `Message` webhook (simulator/incoming.rs).
//!
//! - the WhatsApp Cloud API's messages and media endpoints under `/cloud/{version}`, with
//!   statuses posted back signed with the number's app secret (simulator/cloud.rs).
//!
//! Built for throughput (Herald's benchmark pushes thousands of sends a second through it): the
//! fault knobs are atomics, random draws are lock-free, the ledger and the users each take one
//! short mutex per send, and nothing is logged per request.
//!
mod admin;
mod cloud;
mod cloud_numbers;
mod config;
mod events;
mod groups;
mod incoming;
mod ledger;
mod lock;
mod ops;
mod pairing;
mod receipts;
mod reply;
mod send;
mod session;
mod state;
mod token;
mod users;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use salvo::conn::tcp::TcpAcceptor;
use salvo::server::ServerHandle;
use salvo::{async_trait, Depot, FlowCtrl, Handler, Request, Response, Router, Server};

pub use config::SimulatorConfig;
pub use ledger::SimStats;
pub use receipts::{ReceiptSettings, ReceiptStats};

use admin::AdminOp;
use cloud::CloudOp;
use ledger::Kind;
use ops::OpsOp;
use pairing::PairingOp;
use session::SessionOp;
use state::{FaultSettings, Sim};

/// How long [`RunningSimulator::stop`] lets in-flight requests finish.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// A simulator serving in a background task. Dropping it leaves the server running until the
/// runtime shuts down; call [`RunningSimulator::stop`] to end it.
pub struct RunningSimulator {
    /// The bound address (useful when listening on port 0).
    pub addr: SocketAddr,
    handle: ServerHandle,
    task: tokio::task::JoinHandle<()>,
    sim: Arc<Sim>,
}

impl std::fmt::Debug for RunningSimulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningSimulator")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl RunningSimulator {
    /// `http://<addr>`, ready for [`WuzapiClient::new`](herald_gateway::WuzapiClient::new).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The same counters as `GET /sim/stats`, without a round trip.
    pub fn stats(&self) -> SimStats {
        self.sim.ledger.stats()
    }

    /// The same counters as `GET /sim/receipts`, without a round trip.
    pub fn receipt_stats(&self) -> ReceiptStats {
        self.sim.receipts.stats()
    }

    /// Changes the receipt settings at run time (like `PUT /sim/config`).
    pub fn set_receipts(&self, settings: ReceiptSettings) -> anyhow::Result<()> {
        settings.validate().map_err(anyhow::Error::msg)?;
        self.sim.receipts.set(settings);
        Ok(())
    }

    /// Stops accepting connections, lets in-flight requests finish (briefly), and waits for the
    /// server task to end.
    pub async fn stop(self) {
        self.handle.stop_graceful(STOP_GRACE);
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "simulator task ended abnormally");
        }
    }
}

/// Binds `listen` (e.g. `127.0.0.1:0`) and serves the simulator in a tokio task.
pub async fn spawn(listen: &str, config: SimulatorConfig) -> anyhow::Result<RunningSimulator> {
    let faults = FaultSettings {
        latency_ms: config.latency_ms,
        error_rate: config.error_rate,
        rate_limit_rate: config.rate_limit_rate,
    };
    faults.validate().map_err(anyhow::Error::msg)?;
    config.receipts.validate().map_err(anyhow::Error::msg)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("simulator could not listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let acceptor = TcpAcceptor::try_from(listener)?;
    let sim = Arc::new(Sim::new(&config)?);
    let server = Server::new(acceptor);
    let handle = server.handle();
    let router = router(&sim);
    let task = tokio::spawn(async move {
        if let Err(e) = server.try_serve(router).await {
            tracing::error!(error = %e, "simulator stopped serving");
        }
    });
    Ok(RunningSimulator {
        addr,
        handle,
        task,
        sim,
    })
}

/// Binds `listen`, logs where, and serves until ctrl-c.
pub async fn run(listen: &str, config: SimulatorConfig) -> anyhow::Result<()> {
    let simulator = spawn(listen, config).await?;
    tracing::info!("simulator listening on {}", simulator.base_url());
    tokio::signal::ctrl_c()
        .await
        .context("could not wait for ctrl-c")?;
    simulator.stop().await;
    Ok(())
}

/// Every route the simulator answers.
#[derive(Debug, Clone, Copy)]
enum Route {
    Send(Kind),
    Session(SessionOp),
    Admin(AdminOp),
    Ops(OpsOp),
    Pairing(PairingOp),
    Incoming,
    Cloud(CloudOp),
    Groups,
}

/// One handler type for all routes: it holds the shared state directly, so no per-request
/// lookup in the depot is needed.
struct Endpoint {
    sim: Arc<Sim>,
    route: Route,
}

#[async_trait]
impl Handler for Endpoint {
    async fn handle(
        &self,
        req: &mut Request,
        _depot: &mut Depot,
        res: &mut Response,
        _ctrl: &mut FlowCtrl,
    ) {
        match self.route {
            Route::Send(kind) => send::send(&self.sim, req, res, kind).await,
            Route::Session(op) => session::handle(&self.sim, req, res, op).await,
            Route::Admin(op) => admin::handle(&self.sim, req, res, op).await,
            Route::Ops(op) => ops::handle(&self.sim, req, res, op).await,
            Route::Pairing(op) => pairing::handle(&self.sim, req, res, op).await,
            Route::Incoming => incoming::handle(&self.sim, req, res).await,
            Route::Cloud(op) => cloud::handle(&self.sim, req, res, op).await,
            Route::Groups => groups::list(req, res),
        }
    }
}

fn router(sim: &Arc<Sim>) -> Router {
    let at = |route: Route| Endpoint {
        sim: Arc::clone(sim),
        route,
    };
    let session = |op| at(Route::Session(op));
    let ops = |op| at(Route::Ops(op));
    Router::new()
        .push(Router::with_path("chat/send/text").post(at(Route::Send(Kind::Text))))
        .push(Router::with_path("chat/send/image").post(at(Route::Send(Kind::Image))))
        .push(Router::with_path("session/connect").post(session(SessionOp::Connect)))
        .push(Router::with_path("session/disconnect").post(session(SessionOp::Disconnect)))
        .push(Router::with_path("session/logout").post(session(SessionOp::Logout)))
        .push(Router::with_path("session/status").get(session(SessionOp::Status)))
        .push(Router::with_path("session/qr").get(session(SessionOp::Qr)))
        .push(Router::with_path("session/hmac/config").post(session(SessionOp::HmacConfig)))
        .push(Router::with_path("user/contacts").get(session(SessionOp::Contacts)))
        .push(Router::with_path("chat/presence").post(session(SessionOp::Presence)))
        .push(Router::with_path("group/list").get(at(Route::Groups)))
        .push(
            Router::with_path("webhook")
                .post(session(SessionOp::SetWebhook))
                .get(session(SessionOp::GetWebhook)),
        )
        .push(
            Router::with_path("admin/users")
                .get(at(Route::Admin(AdminOp::List)))
                .post(at(Route::Admin(AdminOp::Create)))
                .push(Router::with_path("{id}").delete(at(Route::Admin(AdminOp::Delete)))),
        )
        .push(Router::with_path("sim/stats").get(ops(OpsOp::Stats)))
        .push(Router::with_path("sim/messages").get(ops(OpsOp::Messages)))
        .push(
            Router::with_path("sim/config")
                .get(ops(OpsOp::GetConfig))
                .put(ops(OpsOp::PutConfig)),
        )
        .push(Router::with_path("sim/receipts").get(ops(OpsOp::Receipts)))
        .push(Router::with_path("sim/reset").post(ops(OpsOp::Reset)))
        .push(Router::with_path("sim/users/{token}/contacts").put(ops(OpsOp::SeedContacts)))
        .push(Router::with_path("sim/scan").post(at(Route::Pairing(PairingOp::Scan))))
        .push(Router::with_path("sim/drop").post(at(Route::Pairing(PairingOp::Drop))))
        .push(Router::with_path("sim/incoming").post(at(Route::Incoming)))
        // the WhatsApp Cloud API surface (simulator/cloud.rs)
        .push(
            Router::with_path("cloud/{version}/{number}")
                .get(at(Route::Cloud(CloudOp::Number)))
                .push(Router::with_path("media").post(at(Route::Cloud(CloudOp::Media))))
                .push(Router::with_path("messages").post(at(Route::Cloud(CloudOp::Messages)))),
        )
        .push(
            Router::with_path("sim/cloud/numbers/{number}")
                .put(at(Route::Cloud(CloudOp::Register))),
        )
        .push(Router::with_path("sim/cloud/messages").get(at(Route::Cloud(CloudOp::List))))
}
