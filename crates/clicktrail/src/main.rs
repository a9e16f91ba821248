//! The `clicktrail` command line.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use clicktrail::app;
use clicktrail::config::Config;
use clicktrail_domain::public_url::{PUBLIC_URL_FIX, check_public_url};
use clicktrail_engine::telemetry;
use clicktrail_store::auth;

#[derive(Parser)]
#[command(
    name = "clicktrail",
    version,
    about = "Self-hosted conversion tracking and attribution"
)]
struct Cli {
    /// Configuration file (default: ./clicktrail.toml when present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the collector, API, dashboard and workers.
    Serve,
    /// Run database migrations and exit.
    Migrate,
    /// Start the server on a separate demo database (./clicktrail-demo-data)
    /// filled with three weeks of simulated traffic, conversions and spend.
    Demo {
        /// Delete the demo database first and simulate again.
        #[arg(long)]
        reset: bool,
    },
    /// Copy the SQLite database to FILE while the server runs: one
    /// consistent snapshot, checked, written atomically (mode 0600), with
    /// the key file beside it as FILE.key. For PostgreSQL, use pg_dump
    /// (docs/DEPLOY.md).
    Backup {
        /// Where to write the copy (replaced atomically if it exists).
        file: PathBuf,
        /// Do not copy secret.key to FILE.key (a restore needs it: keep it
        /// elsewhere).
        #[arg(long)]
        no_key: bool,
    },
    /// Put a backup made by `clicktrail backup` in place as the configured
    /// database, which must not exist yet, with its key (FILE.key). The
    /// next start applies pending migrations.
    Restore {
        /// The backup to restore.
        file: PathBuf,
        /// Replace an existing database and key file (moved aside, not
        /// deleted); the server must be stopped.
        #[arg(long)]
        force: bool,
        /// Neither restore nor check the key (put it in place yourself).
        #[arg(long)]
        no_key: bool,
    },
    /// API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an API token for a workspace (created if missing); prints it once.
    Create {
        #[arg(long, default_value = "default")]
        workspace: String,
        #[arg(long, default_value = "cli")]
        name: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cfg = Config::load(cli.config.as_deref())?;
    telemetry::init_tracing(&cfg.log, cfg.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(cli.command, cfg))
}

async fn run(command: Command, cfg: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve(cfg).await,
        Command::Demo { reset } => demo(cfg, reset).await,
        Command::Migrate => {
            let db = app::open_database(&cfg).await?;
            db.close().await;
            println!(
                "migrations applied to {}",
                app::redact_url(&cfg.database_url)
            );
            Ok(())
        }
        Command::Backup { file, no_key } => {
            tokio::task::spawn_blocking(move || clicktrail::backup::backup(&cfg, &file, !no_key))
                .await?
        }
        Command::Restore {
            file,
            force,
            no_key,
        } => {
            tokio::task::spawn_blocking(move || {
                clicktrail::backup::restore(&cfg, &file, force, !no_key)
            })
            .await?
        }
        Command::Token {
            command: TokenCommand::Create { workspace, name },
        } => {
            let db = app::open_database(&cfg).await?;
            let ws = auth::ensure_workspace(&db, &workspace).await?;
            let (_, token) = auth::create_token(&db, ws.id, &name).await?;
            db.close().await;
            println!("{token}");
            eprintln!("API token for workspace {workspace:?}; it is shown only this once.");
            Ok(())
        }
    }
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let open_files = clicktrail::serve::raise_open_files_limit();
    tracing::info!(open_files, "open-file limit");
    let db_url = app::redact_url(&cfg.database_url);
    let public_url_is_default = cfg.public_url.is_none();
    let signal = shutdown_signal();
    let server = app::start(cfg).await.context("starting clicktrail")?;
    let base = server.services.properties.public_base().to_owned();
    println!("clicktrail is running at {}", server.base_url());
    println!("  dashboard:  {base}/");
    println!("  API:        {base}/api/v1   (Authorization: Bearer <token>)");
    println!("  collector:  {base}/collect");
    println!("  database:   {db_url}");
    if server.first_run {
        println!();
        println!("First run. Open {base}/ to create the first admin, or use the API:");
        println!("  1. clicktrail token create --workspace default");
        println!("  2. curl -X POST {base}/api/v1/properties \\");
        println!(
            "       -H 'Authorization: Bearer <token>' -H 'Content-Type: application/json' \\"
        );
        println!("       -d '{{\"name\": \"My site\", \"domains\": [\"example.com\"]}}'");
        println!("  3. paste the returned snippet into your site's <head>.");
    }
    if let Some(code) = &server.setup_code {
        // The first admin is whoever opens /setup first: beyond loopback
        // only whoever reads this output may.
        println!();
        if clicktrail_dashboard::accounts::SetupGuard::listen_exposed(server.addr) {
            println!("Setup code (asked by {base}/setup): {code}");
        } else {
            println!(
                "Setup code (asked by {base}/setup only through a proxy or from another machine): {code}"
            );
        }
    }
    if let Some(problem) = check_public_url(&base) {
        // Said at every start: a live site pasted with this snippet tracks
        // nothing, and nothing else would tell.
        let default = if public_url_is_default {
            " (the default: http://<listen address>)"
        } else {
            ""
        };
        println!();
        println!("WARNING: the public URL is {base}{default}.");
        println!("  {}", problem.explain(&base));
        println!("  {PUBLIC_URL_FIX}");
        println!("  (Fine for trying clicktrail on this machine or a local network.)");
        tracing::warn!(
            code = problem.code(),
            public_url = %base,
            "the public URL cannot serve a live site"
        );
    }
    let token = server.shutdown_token();
    tokio::spawn(async move {
        signal.await;
        tracing::info!("shutting down: finishing in-flight requests and flushing the write queue");
        token.cancel();
    });
    server.wait().await
}

async fn demo(cfg: Config, reset: bool) -> anyhow::Result<()> {
    clicktrail::serve::raise_open_files_limit();
    let signal = shutdown_signal();
    let server = clicktrail::demo::start(cfg, reset).await?;
    let base = server.services.properties.public_base().to_owned();
    println!("clicktrail demo is running at {base}/");
    println!(
        "  log in with {} / {}",
        clicktrail::demo::DEMO_EMAIL,
        clicktrail::demo::DEMO_PASSWORD
    );
    println!(
        "  demo database: ./clicktrail-demo-data (separate from your real data; `clicktrail demo --reset` starts over)"
    );
    let token = server.shutdown_token();
    tokio::spawn(async move {
        signal.await;
        token.cancel();
    });
    server.wait().await
}

/// Installs the SIGTERM and SIGINT handlers now (so a signal that comes
/// while the server is still starting is kept, not fatal) and returns what
/// waits for the first of them.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
