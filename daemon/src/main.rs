use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use inferd::config::{Config, ConfigError, Overrides};
use inferd::service::Control;
use tokio::sync::mpsc;

/// On-device inference daemon: serves ONNX models over D-Bus and MQTT.
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

impl Cli {
    /// The config file with the command line on top; run again on every reload.
    fn load(&self) -> Result<Config, ConfigError> {
        let mut config = Config::load(self.config.as_deref())?;
        config.apply(Overrides {
            models: self.models.clone(),
            bus: self.bus.clone(),
            log_level: self.log_level.clone(),
        });
        Ok(config)
    }
}

fn level(config: &Config) -> &str {
    config.log_level.as_deref().unwrap_or("info")
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    let config = match cli.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("inferd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let logs = inferd::logging::init(level(&config));

    if let Some(Command::Check) = cli.command.take() {
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
    let reload = move || {
        let config = cli.load()?;
        logs.set_level(level(&config));
        Ok(config)
    };
    let result = rt.block_on(async {
        let control = signals();
        inferd::run(config, control, reload).await
    });
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

/// SIGTERM and SIGINT stop the daemon; SIGHUP reloads it.
fn signals() -> mpsc::UnboundedReceiver<Control> {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = mpsc::unbounded_channel();
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; stop inferd with SIGKILL");
        std::mem::forget(tx);
        return rx;
    };
    tokio::spawn(async move {
        loop {
            let c = tokio::select! {
                _ = term.recv() => Control::Stop,
                _ = int.recv() => Control::Stop,
                _ = hup.recv() => Control::Reload,
            };
            if tx.send(c).is_err() {
                return;
            }
        }
    });
    rx
}
