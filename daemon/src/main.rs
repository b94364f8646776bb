use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use inferd::config::{Config, Overrides};
use tracing_subscriber::EnvFilter;

/// On-device inference daemon: serves ONNX models over D-Bus.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Config file [default: /etc/inferd/inferd.toml when it exists]
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Model repository (overrides models.dir)
    #[arg(long, global = true)]
    models: Option<PathBuf>,
    /// session, system, or a D-Bus address (overrides dbus.bus)
    #[arg(long, global = true)]
    bus: Option<String>,
    /// error, warn, info, debug, trace (overrides log_level)
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the config and every manifest, report the ONNX Runtime found, and exit
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("inferd: {e}");
            return ExitCode::FAILURE;
        }
    };
    config.apply(Overrides {
        models: cli.models,
        bus: cli.bus,
        log_level: cli.log_level,
    });
    let filter = log_filter(config.log_level.as_deref().unwrap_or("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    if let Some(Command::Check) = cli.command {
        let problems = inferd::check::check(&config);
        return if problems == 0 {
            ExitCode::SUCCESS
        } else {
            eprintln!("inferd check: {problems} problem(s)");
            ExitCode::FAILURE
        };
    }

    // The async side only moves messages; inference runs on the models' own threads. One
    // runtime thread avoids cross-thread wake-ups on every reply.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("inferd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(inferd::run(config, stop_signal()));
    // Workers still busy after the drain timeout must not keep the process alive.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("inferd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The log filter for inferd's own logs. ONNX Runtime logs warnings and errors to stderr through
/// its default logger: routing it through tracing would make it log at verbose level, which
/// costs a quarter of decode speed.
fn log_filter(level: &str) -> EnvFilter {
    EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Resolves on SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop inferd with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
