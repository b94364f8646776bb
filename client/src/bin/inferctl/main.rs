//! `inferctl`: the command-line client of inferd.

mod commands;
mod exit;
mod generate;
mod hub;
mod import;
mod manual;
mod mqtt_cmd;
mod output;
mod progress;
mod pull;
mod tensor_arg;
mod transport;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use inferd_client::{Error, Inferd1Proxy};

/// Talk to the inferd daemon over D-Bus, or over MQTT with --mqtt.
#[derive(Parser)]
#[command(version, after_help = exit::help())]
pub struct Cli {
    /// auto (the bus inferd runs on, session first; else the first that can start it),
    /// session, system, or a D-Bus address
    #[arg(long, global = true, default_value = "auto", env = "INFERD_BUS")]
    bus: String,
    #[command(flatten)]
    mqtt: mqtt_cmd::MqttArgs,
    /// Print machine-readable JSON
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// List models with their kind, state and provider
    Models,
    /// Overall health, uptime, memory, KV caches, per-model queue depth and last error; exits
    /// 8 when degraded (a model failed)
    Health,
    /// Load (or reload) a model; waits until it is ready
    Load {
        /// The model's folder name in the repository
        name: String,
    },
    /// Stop serving a model
    Unload {
        /// The model's name
        name: String,
    },
    /// Rescan the model repository
    Reload,
    /// Load a model and wait until it is on its final provider (builds a TensorRT engine now)
    Warmup {
        /// The model's name
        name: String,
    },
    /// Embed texts
    Embed {
        /// The embedding model
        model: String,
        /// Texts to embed; `-` reads them from stdin, one a line
        #[arg(required = true)]
        texts: Vec<String>,
        /// Print the cosine-similarity matrix instead of the vectors
        #[arg(long)]
        similarity: bool,
        /// Fail instead of truncating texts longer than the model's max_length
        #[arg(long)]
        no_truncate: bool,
        /// Give up if the request waits longer than this in the queue
        #[arg(long)]
        timeout_ms: Option<u32>,
    },
    /// Generate from a raw prompt, streaming to stdout (--json: NDJSON events)
    Generate {
        /// The text-generation model
        model: String,
        /// The prompt; `-` reads it from stdin
        prompt: String,
        #[command(flatten)]
        options: generate::GenArgs,
    },
    /// Chat with a model interactively
    Chat {
        /// The text-generation model
        model: String,
        /// A system message for the conversation
        #[arg(long)]
        system: Option<String>,
        #[command(flatten)]
        options: generate::GenArgs,
    },
    /// Import a GGUF file or Hugging Face checkpoint as an ONNX text-generation model
    Import(import::ImportArgs),
    /// Download a model from the Hugging Face Hub (HF_ENDPOINT, HF_TOKEN) and import it
    Pull(pull::PullArgs),
    /// Classify texts with a classification model
    Classify {
        /// The classification model
        model: String,
        /// Texts to classify; `-` reads them from stdin, one a line
        #[arg(required = true)]
        texts: Vec<String>,
        /// Labels to show per text (0: all)
        #[arg(long, default_value_t = 3)]
        top_k: u32,
    },
    /// Print a completion script for a shell (bash, zsh, fish, elvish, powershell)
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
    /// Print inferctl's man page (roff)
    Man,
    /// Run a tensor model
    Infer {
        /// The tensor model
        model: String,
        /// NAME=DTYPE:SHAPE:VALUES (e.g. x=float32:2x3:1,2,3,4,5,6), NAME=FILE.npy, or NAME=-
        /// for a .npy on stdin
        #[arg(long = "input", required = true)]
        inputs: Vec<String>,
    },
}

/// The bus `--bus` names; `auto` looks for inferd on the session bus, then the system bus.
async fn connect(bus: &str) -> Result<zbus::Connection, Error> {
    Ok(match bus {
        "auto" => return find().await,
        "session" => zbus::Connection::session().await?,
        "system" => zbus::Connection::system().await?,
        address => zbus::connection::Builder::address(address)?.build().await?,
    })
}

/// The bus inferd runs on: the session bus, else the system bus; where it runs on neither, the
/// first that can start it (a user unit, or the system service). Else an error that says where
/// it looked. A running daemon wins over one the session bus could start: a desktop with the
/// package installed can always activate a user daemon, which would have no models.
async fn find() -> Result<zbus::Connection, Error> {
    let mut looked = Vec::new();
    let mut buses = Vec::new();
    for name in ["session", "system"] {
        let conn = match name {
            "session" => zbus::Connection::session().await,
            _ => zbus::Connection::system().await,
        };
        match conn {
            Ok(c) => match owner(&c).await {
                Owner::Running => return Ok(c),
                Owner::Startable => buses.push((name, c)),
                Owner::None => looked.push(format!("not on the {name} bus")),
            },
            Err(e) => looked.push(format!("no {name} bus ({e})")),
        }
    }
    if let Some((_, c)) = buses.into_iter().next() {
        return Ok(c);
    }
    Err(Error::ZBus(zbus::Error::Failure(format!(
        "inferd is not running: {}. Start it (systemctl --user start inferd, or systemctl start \
         inferd), or name its bus with --bus",
        looked.join(", ")
    ))))
}

enum Owner {
    Running,
    Startable,
    None,
}

/// Whether inferd owns its name on `c`, or `c` can start it.
async fn owner(c: &zbus::Connection) -> Owner {
    let Ok(dbus) = zbus::fdo::DBusProxy::new(c).await else {
        return Owner::None;
    };
    let Ok(name) = zbus::names::BusName::try_from(inferd_client::names::BUS_NAME) else {
        return Owner::None;
    };
    if dbus.name_has_owner(name).await.unwrap_or(false) {
        return Owner::Running;
    }
    let startable = dbus.list_activatable_names().await.is_ok_and(|names| {
        names
            .iter()
            .any(|n| n.as_str() == inferd_client::names::BUS_NAME)
    });
    if startable {
        Owner::Startable
    } else {
        Owner::None
    }
}

/// Runs a daemon command over D-Bus.
async fn over_dbus(bus: &str, json: bool, command: Command) -> Result<(), Error> {
    let conn = connect(bus).await?;
    let proxy = Inferd1Proxy::new(&conn).await?;
    let t = transport::Transport::Bus { conn: &conn, proxy };
    commands::run(&t, json, command).await
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The importer runs locally and needs no bus; it prints its own errors.
    let local = |done: Result<i32, String>| match done {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    };
    let command = match cli.command {
        Command::Import(args) => return local(import::run(args)),
        Command::Pull(args) => return local(pull::run(args)),
        Command::Completions { shell } => return local(manual::completions(shell)),
        Command::Man => return local(manual::man()),
        other => other,
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let work = async {
        match &cli.mqtt.mqtt {
            Some(url) => mqtt_cmd::run(url, &cli.mqtt, cli.json, command).await,
            None => over_dbus(&cli.bus, cli.json, command).await,
        }
    };
    match rt.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => exit::fail(&e, cli.json),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every argument and subcommand says what it is for in `--help`.
    #[test]
    fn every_option_has_help_text() {
        fn walk(c: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in c.get_arguments() {
                let id = a.get_id().as_str();
                if a.get_help().is_none() && id != "help" && id != "version" {
                    missing.push(format!("{path} {id}"));
                }
            }
            for s in c.get_subcommands() {
                if s.get_about().is_none() {
                    missing.push(format!("{path} {}", s.get_name()));
                }
                walk(s, &format!("{path} {}", s.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "inferctl", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }
}
