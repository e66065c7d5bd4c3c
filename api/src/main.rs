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
    /// Print the OpenAPI document `GET /api/v1/openapi.json` serves (no database needed).
    Openapi,
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
        /// Projector name: templates, sessions, campaign_progress, contacts or conversations
        /// (`herald projections list`).
        name: String,
    },
    /// List every projector.
    List,
    /// List the events projectors parked (they failed on their own) and the parked webhook posts.
    Parked {
        /// Only this projector's events.
        #[arg(long)]
        projector: Option<String>,
    },
    /// Apply parked events again (or, with --inbox, parked webhook posts).
    Retry {
        /// Only this projector's events.
        #[arg(long)]
        projector: Option<String>,
        /// Every parked event (of --projector, if given).
        #[arg(long, conflicts_with = "positions")]
        all: bool,
        /// Retry parked webhook posts instead: POSITION is then a post's inbox id.
        #[arg(long, conflicts_with = "projector")]
        inbox: bool,
        /// Events by position (as `parked` shows them).
        #[arg(required_unless_present = "all")]
        positions: Vec<i64>,
    },
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
    // `herald openapi` prints a document to stdout: no log line may land in it
    if !matches!(cli.command, Command::Openapi) {
        init_tracing();
    }
    match cli.command {
        Command::Serve { role } => {
            let settings = Settings::from_env()?;
            let app = Application::build(settings, role).await?;
            app.run_until_stopped().await;
        }
        Command::Openapi => {
            println!("{}", herald_api::routes::openapi_json()?);
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
        Command::Projections { command } => projections(command).await?,
    }
    Ok(())
}

async fn projections(command: ProjectionsCommand) -> anyhow::Result<()> {
    use herald_projections::maintenance::{self, Rebuilt, Selection};
    if let ProjectionsCommand::List = command {
        for line in maintenance::list() {
            println!("{line}");
        }
        return Ok(());
    }
    let settings = Settings::from_env()?;
    let pool = herald_api::app::connect(&settings).await?;
    herald_migrations::MIGRATOR.run(&pool).await?;
    match command {
        ProjectionsCommand::List => {}
        ProjectionsCommand::Rebuild { name } => match maintenance::rebuild(&pool, &name).await? {
            Rebuilt::Replayed(n) => println!("rebuilt {name}: {n} events applied"),
            Rebuilt::HandedOver => println!("reset {name}; the running herald is replaying it now"),
        },
        ProjectionsCommand::Parked { projector } => {
            let events = maintenance::parked(&pool, projector.as_deref()).await?;
            println!("{} parked event(s)", events.len());
            print!("{}", maintenance::format_parked(&events));
            if projector.is_none() {
                let posts = herald_inbox::parked_posts(&pool).await?;
                println!("{} parked webhook post(s)", posts.len());
                print!("{}", herald_inbox::format_parked_posts(&posts));
            }
        }
        ProjectionsCommand::Retry {
            projector,
            all,
            inbox,
            positions,
        } => {
            let selection = if all {
                Selection::All
            } else {
                Selection::Positions(positions)
            };
            if inbox {
                let n = herald_inbox::retry_parked(&pool, &selection).await?;
                println!("{n} parked webhook post(s) due for processing again");
            } else {
                let outcomes = maintenance::retry(
                    &pool,
                    projector.as_deref(),
                    &selection,
                    maintenance::RETRY_WAIT,
                )
                .await?;
                print!("{}", maintenance::format_retried(&outcomes));
            }
        }
    }
    Ok(())
}
