//! The `herald` binary: a thin command line over [`herald_api::Application`].

/// mimalloc instead of the system allocator: a webhook post is dozens of short-lived
/// allocations, and glibc's malloc was a tenth of Herald's CPU under the receipt load
/// (docs/decisions/0032).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use herald_api::{Application, Role, Settings};

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "Event-sourced campaign and messaging engine for WhatsApp gateways"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations, then run the API, projectors and dispatch workers.
    Serve {
        #[arg(long, value_enum, default_value = "all")]
        role: Role,
    },
    /// Apply pending migrations and exit.
    Migrate,
    /// Run the WuzAPI-compatible gateway simulator.
    Sim {
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: String,
        /// Added latency per send, in milliseconds.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Fraction (0..1) of sends answered 500.
        #[arg(long, default_value_t = 0.0)]
        error_rate: f64,
        /// Fraction (0..1) of sends answered 429.
        #[arg(long, default_value_t = 0.0)]
        rate_limit_rate: f64,
        /// Do not post Delivered and Read receipts back to the users' webhooks.
        #[arg(long)]
        no_receipts: bool,
        /// After an accepted send, when its Delivered receipt is posted, in milliseconds.
        #[arg(long, default_value_t = 50)]
        receipt_delivered_after_ms: u64,
        /// After an accepted send, when its Read receipt is posted, in milliseconds.
        #[arg(long, default_value_t = 150)]
        receipt_read_after_ms: u64,
        /// How receipts are encoded: `form` (WuzAPI's default) or `json`.
        #[arg(long, default_value = "form", value_parser = ["form", "json"])]
        receipt_encoding: String,
    },
    /// Read-model maintenance.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
}

#[derive(Subcommand)]
enum ProjectionsCommand {
    /// Truncate a read model and replay the event store into it.
    Rebuild {
        /// Projector name: templates, sessions or campaign_progress.
        name: String,
    },
    /// List the projectors.
    List,
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tokio_cron_scheduler=warn"));
    let json = std::env::var("HERALD_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    match cli.command {
        Command::Serve { role } => {
            let settings = Settings::from_env()?;
            let app = Application::build(settings, role).await?;
            app.run_until_stopped().await;
        }
        Command::Migrate => {
            let settings = Settings::from_env()?;
            let pool = herald_api::app::connect(&settings).await?;
            herald_migrations::MIGRATOR.run(&pool).await?;
            tracing::info!("migrations applied");
        }
        Command::Sim {
            listen,
            latency_ms,
            error_rate,
            rate_limit_rate,
            no_receipts,
            receipt_delivered_after_ms,
            receipt_read_after_ms,
            receipt_encoding,
        } => {
            use herald_gateway::webhook::Encoding;
            use herald_simulator::ReceiptSettings;
            // on by default here, so a campaign run through `run.sh` shows delivered and read
            let receipts = ReceiptSettings {
                enabled: !no_receipts,
                delivered_after_ms: receipt_delivered_after_ms,
                read_after_ms: receipt_read_after_ms,
                encoding: if receipt_encoding == "json" {
                    Encoding::Json
                } else {
                    Encoding::Form
                },
                ..ReceiptSettings::on()
            };
            let config = herald_simulator::SimulatorConfig {
                latency_ms,
                error_rate,
                rate_limit_rate,
                admin_token: std::env::var("HERALD_WUZAPI_ADMIN_TOKEN").ok(),
                seed: None,
                receipts,
            };
            herald_simulator::run(&listen, config).await?;
        }
        Command::Projections { command } => {
            let all = herald_projections::all();
            match command {
                ProjectionsCommand::List => {
                    for p in &all {
                        println!("{}", p.name());
                    }
                }
                ProjectionsCommand::Rebuild { name } => {
                    let projector =
                        all.into_iter().find(|p| p.name() == name).ok_or_else(|| {
                            anyhow::anyhow!(
                                "unknown projector {name:?}; see `herald projections list`"
                            )
                        })?;
                    let settings = Settings::from_env()?;
                    let pool = herald_api::app::connect(&settings).await?;
                    herald_migrations::MIGRATOR.run(&pool).await?;
                    herald_projections::runtime::reset(&pool, projector.as_ref()).await?;
                    match herald_projections::runtime::catch_up(&pool, projector.as_ref()).await {
                        Ok(n) => println!("rebuilt {name}: {n} events applied"),
                        Err(_) => println!("reset {name}; the running herald is replaying it now"),
                    }
                }
            }
        }
    }
    Ok(())
}
