//! Builds Herald: pool, migrations, projectors, dispatch workers and the HTTP server, by role.
//! `main.rs` and the tests both start Herald through [`Application::build`].

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use herald_gateway::{Gateway, WuzapiClient};
use herald_projections::notifier::{Notifier, ProgressTracker, PROGRESS_INTERVAL};
use herald_projections::notify::Notifications;
use herald_scheduler::{DispatchConfig, Dispatcher};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use salvo::catcher::Catcher;
use salvo::conn::TcpListener;
use salvo::prelude::*;
use salvo::server::ServerHandle;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::config::Settings;
use crate::error::envelope_catcher;
use crate::state::AppState;

/// Which parts of Herald this process runs (`herald serve --role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// The HTTP API only.
    Api,
    /// Projectors, dispatch workers, the ticker and the webhook inbox processor only.
    Worker,
    /// Everything (the default).
    All,
}

impl Role {
    fn serves_http(self) -> bool {
        matches!(self, Role::Api | Role::All)
    }
    fn runs_workers(self) -> bool {
        matches!(self, Role::Worker | Role::All)
    }
}

/// How long a stopping process takes at most (an orchestrator's grace period is 10 s or more).
pub const STOP_WITHIN: Duration = Duration::from_secs(9);

pub struct Application {
    addr: Option<SocketAddr>,
    pool: PgPool,
    shutdown: watch::Sender<bool>,
    server: Option<(ServerHandle, tokio::task::JoinHandle<()>)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The API's shared pools, when this process serves HTTP (their counters, for tests).
    pools: Option<crate::pools::Pools>,
}

/// The process-wide Prometheus recorder (installed once, shared by every Application in a process).
fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .clone()
}

pub async fn connect(settings: &Settings) -> anyhow::Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(settings.db_pool_size)
        .acquire_timeout(Duration::from_secs(10))
        .connect(settings.database_url.expose())
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to the database: {e}"))?;
    Ok(pool)
}

impl Application {
    pub async fn build(settings: Settings, role: Role) -> anyhow::Result<Application> {
        let dispatch = DispatchConfig {
            batch_size: settings.dispatch_batch_size,
            concurrency: settings.dispatch_concurrency,
            lease: Duration::from_secs(settings.dispatch_lease_secs),
            ..DispatchConfig::default()
        };
        Self::build_with_dispatch(settings, role, dispatch).await
    }

    /// [`Application::build`] with an explicit dispatch configuration (tests, the benchmark);
    /// the number of workers still comes from `settings`.
    pub async fn build_with_dispatch(
        settings: Settings,
        role: Role,
        mut dispatch: DispatchConfig,
    ) -> anyhow::Result<Application> {
        let pool = connect(&settings).await?;
        herald_migrations::MIGRATOR.run(&pool).await?;
        let gateway: Arc<dyn Gateway> = Arc::new(WuzapiClient::new(
            &settings.wuzapi_url,
            settings
                .wuzapi_admin_token
                .as_ref()
                .map(|t| t.expose().to_string()),
        )?);
        let metrics = metrics_handle();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let notifications = notifications(&settings, role, shutdown_rx.clone()).await?;

        if role.runs_workers() {
            let wakeup = herald_projections::Wakeup::new();
            wakeup.spawn_watcher(pool.clone(), shutdown_rx.clone());
            for projector in herald_projections::all() {
                tasks.push(tokio::spawn(herald_projections::runtime::run(
                    pool.clone(),
                    projector,
                    wakeup.clone(),
                    herald_projections::RunnerConfig::default(),
                    shutdown_rx.clone(),
                )));
            }
            tasks.extend(spawn_notifier(
                &pool,
                &notifications,
                &wakeup,
                shutdown_rx.clone(),
            ));
            // outbound webhooks: its projector (never rebuilt, like the notifier) and worker
            tasks.extend(herald_outbound::spawn(
                pool.clone(),
                settings.outbound.clone(),
                wakeup.clone(),
                shutdown_rx.clone(),
            ));
            dispatch.workers = settings.dispatch_workers;
            dispatch.quota_window =
                herald_scheduler::quota::Window::new(settings.quota_window_secs);
            let cloud = herald_gateway::CloudApiClient::new(&settings.meta_graph_url)?;
            let dispatcher =
                Dispatcher::with_cloud(pool.clone(), gateway.clone(), Arc::new(cloud), dispatch);
            tasks.extend(dispatcher.spawn(shutdown_rx.clone()));
            tasks.push(herald_inbox::spawn(
                pool.clone(),
                herald_inbox::InboxConfig::default(),
                shutdown_rx.clone(),
            ));
            tasks.push(herald_media::gc::spawn(
                pool.clone(),
                herald_media::gc::GcConfig {
                    every: Duration::from_secs(settings.media_gc_interval_secs),
                    grace: Duration::from_secs(settings.media_grace_secs),
                },
                shutdown_rx.clone(),
            ));
            tasks.push(
                herald_scheduler::ticker::spawn(
                    pool.clone(),
                    std::sync::Arc::new(herald_campaigns::starts::Starts),
                    Duration::from_secs(settings.recurrence_grace_secs),
                    shutdown_rx.clone(),
                )
                .await?,
            );
        }

        let probe = crate::routes::health::Probe {
            pool: pool.clone(),
            notifications: notifications.clone(),
            metrics: metrics.clone(),
        };
        let addr;
        let server;
        let mut pools = None;
        if role.serves_http() {
            let acceptor = TcpListener::new(settings.listen.clone()).bind().await;
            let local = acceptor.local_addr()?;
            let public_url = settings
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{local}"));
            let state =
                AppState::new(pool.clone(), settings.clone(), gateway, public_url, metrics)?;
            pools = Some(state.pools.clone());
            let router = Router::new()
                .hoop(affix_state::inject(state))
                .hoop(affix_state::inject(notifications.clone()))
                .hoop(affix_state::inject(probe.clone()))
                .push(crate::routes::router());
            let service = Service::new(router).catcher(Catcher::default().hoop(envelope_catcher));
            // a body that sends nothing for this long fails its read: 408 (crate::error::body_error)
            let fuse = salvo::fuse::FuseConfig::default().with_request_body_timeout(Some(
                Duration::from_secs(settings.body_idle_timeout_secs),
            ));
            let srv = Server::new(acceptor).fuse_config(fuse);
            let handle = srv.handle();
            let task = tokio::spawn(async move { srv.serve(service).await });
            tracing::info!("listening on http://{local}");
            addr = Some(local);
            server = Some((handle, task));
        } else {
            // a worker serves the probes only, on its own port (docs/running.md)
            let acceptor = TcpListener::new(settings.worker_listen.clone())
                .bind()
                .await;
            let local = acceptor.local_addr()?;
            let service = Service::new(crate::routes::health::router(probe))
                .catcher(Catcher::default().hoop(envelope_catcher));
            let srv = Server::new(acceptor);
            let handle = srv.handle();
            let task = tokio::spawn(async move { srv.serve(service).await });
            tracing::info!(
                "worker running (projectors and dispatch); health and metrics listening on http://{local}"
            );
            addr = Some(local);
            server = Some((handle, task));
        }
        Ok(Application {
            addr,
            pool,
            shutdown,
            server,
            tasks,
            pools,
        })
    }

    /// The bound address (port 0 resolved): the API's, or a worker's probes.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The shared pools of the HTTP API (decision 0043), when this process serves it.
    pub fn pools(&self) -> Option<&crate::pools::Pools> {
        self.pools.as_ref()
    }

    /// Stops accepting requests, lets in-flight work finish, and stops the workers, all within
    /// [`STOP_WITHIN`]: the dispatchers start no new gateway call, finish and record the calls
    /// in flight and put the rest of their batches back in the queue (docs/running.md).
    pub async fn stop(self) {
        let deadline = tokio::time::Instant::now() + STOP_WITHIN;
        let _ = self.shutdown.send(true);
        if let Some((handle, task)) = self.server {
            handle.stop_graceful(STOP_WITHIN - Duration::from_secs(1));
            let _ = tokio::time::timeout_at(deadline, task).await;
        }
        for t in self.tasks {
            let _ = tokio::time::timeout_at(deadline, t).await;
        }
        self.pool.close().await;
    }

    /// Runs until Ctrl-C or SIGTERM, then stops gracefully.
    pub async fn run_until_stopped(self) {
        shutdown_signal().await;
        tracing::info!("shutting down");
        self.stop().await;
    }
}

/// Real-time notifications: NATS when `NATS_URL` is set, otherwise in-process (docs/events.md).
async fn notifications(
    settings: &Settings,
    role: Role,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Notifications> {
    match &settings.nats_url {
        Some(url) => Notifications::nats(url, shutdown).await,
        None => {
            if role == Role::Api {
                tracing::warn!(
                    "NATS_URL unset: this api-only process gets no real-time events (the notifier runs in worker processes)"
                );
            }
            Ok(Notifications::local(shutdown))
        }
    }
}

/// The `notifier` projector and its `campaign.progress` emitter. Not in
/// `herald_projections::all()`: it is no read model and must never be rebuilt (that would replay
/// history to live subscribers).
fn spawn_notifier(
    pool: &PgPool,
    notifications: &Notifications,
    wakeup: &herald_projections::Wakeup,
    shutdown: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let progress = Arc::new(ProgressTracker::default());
    let emitter = progress.spawn(
        pool.clone(),
        notifications.clone(),
        PROGRESS_INTERVAL,
        shutdown.clone(),
    );
    let notifier = tokio::spawn(herald_projections::runtime::run(
        pool.clone(),
        Arc::new(Notifier::new(notifications.clone(), progress)),
        wakeup.clone(),
        herald_projections::RunnerConfig::default(),
        shutdown,
    ));
    vec![emitter, notifier]
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
