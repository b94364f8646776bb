//! `inferctl`: the command-line client of inferd.

mod commands;
mod generate;
mod hub;
mod import;
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
#[command(version)]
struct Cli {
    /// session, system, or a D-Bus address
    #[arg(long, global = true, default_value = "session", env = "INFERD_BUS")]
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
    /// Overall health, uptime, memory and per-model queue depth and last error; exits 2 when
    /// degraded (a model failed)
    Health,
    /// Load (or reload) a model; waits until it is ready
    Load { name: String },
    /// Stop serving a model
    Unload { name: String },
    /// Rescan the model repository
    Reload,
    /// Load a model and wait until it is on its final provider (builds a TensorRT engine now)
    Warmup { name: String },
    /// Embed texts
    Embed {
        model: String,
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
        model: String,
        prompt: String,
        #[command(flatten)]
        options: generate::GenArgs,
    },
    /// Chat with a model interactively
    Chat {
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
        model: String,
        #[arg(required = true)]
        texts: Vec<String>,
        /// Labels to show per text (0: all)
        #[arg(long, default_value_t = 3)]
        top_k: u32,
    },
    /// Run a tensor model
    Infer {
        model: String,
        /// NAME=DTYPE:SHAPE:VALUES (e.g. x=float32:2x3:1,2,3,4,5,6) or NAME=FILE.npy
        #[arg(long = "input", required = true)]
        inputs: Vec<String>,
    },
}

async fn connect(bus: &str) -> zbus::Result<zbus::Connection> {
    match bus {
        "session" => zbus::Connection::session().await,
        "system" => zbus::Connection::system().await,
        address => zbus::connection::Builder::address(address)?.build().await,
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
        Err(e) => {
            eprintln!("error: {}: {}", e.short_name(), e.message());
            ExitCode::FAILURE
        }
    }
}
