//! Load generator for `make bench` (scripts/bench.py runs it and writes docs/benchmarks.md).
//!
//! - `throughput`: N concurrent D-Bus clients, each its own connection, one text per request.
//! - `latency`: one D-Bus client, sequential requests; p50/p99 round-trip time.
//! - `inprocess`: the same engine call without D-Bus, for the overhead comparison.
//! - `ping`: `org.freedesktop.DBus.Peer.Ping` to the daemon: the bus's own round trip.
//! - `mqtt-latency`, `mqtt-throughput`: the same over MQTT 5 through a broker, with
//!   `inferd_client::mqtt` (each throughput client is its own MQTT connection).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use inferd::engine::Engine;
use inferd::work::job::EmbedRequest;
use inferd_client::messages::{EmbedResult, TextsInput};
use inferd_client::mqtt::{MqttClient, Target};
use inferd_client::Inferd1Proxy;
use serde_json::json;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Throughput {
        #[arg(long)]
        bus: String,
        #[arg(long, default_value = "minilm")]
        model: String,
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
    Latency {
        #[arg(long)]
        bus: String,
        #[arg(long, default_value = "minilm")]
        model: String,
        #[arg(long, default_value_t = 1000)]
        n: usize,
    },
    Ping {
        #[arg(long)]
        bus: String,
        #[arg(long, default_value_t = 1000)]
        n: usize,
    },
    /// Embed round trips over the OpenAI-compatible API (`POST /v1/embeddings`), one
    /// keep-alive connection.
    HttpLatency {
        /// `127.0.0.1:PORT`
        #[arg(long)]
        addr: String,
        #[arg(long, default_value = "minilm")]
        model: String,
        #[arg(long, default_value_t = 1000)]
        n: usize,
    },
    MqttLatency {
        #[arg(long)]
        url: String,
        #[arg(long)]
        node: String,
        #[arg(long, default_value = "minilm")]
        model: String,
        #[arg(long, default_value_t = 1000)]
        n: usize,
    },
    MqttThroughput {
        #[arg(long)]
        url: String,
        #[arg(long)]
        node: String,
        #[arg(long, default_value = "minilm")]
        model: String,
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
    Inprocess {
        #[arg(long)]
        models: PathBuf,
        #[arg(long, default_value = "minilm")]
        model: String,
        #[arg(long, default_value_t = 1000)]
        n: usize,
    },
}

const TEXT: &str = "A man is playing a guitar on a sunny afternoon.";

async fn proxy(bus: &str) -> Inferd1Proxy<'static> {
    let conn = zbus::connection::Builder::address(bus)
        .expect("bus address")
        .build()
        .await
        .expect("connect");
    Inferd1Proxy::new(&conn).await.expect("proxy")
}

async fn mqtt(url: &str, node: &str) -> MqttClient {
    MqttClient::connect(url, "inferd", "replies", Target::Node(node.to_owned()))
        .await
        .expect("connect to the broker")
}

async fn mqtt_embed(c: &MqttClient, model: &str) {
    let input = TextsInput {
        texts: vec![TEXT.to_owned()],
    };
    let _: (EmbedResult, _) = c
        .request(model, "embed", input, Default::default())
        .await
        .expect("embed over MQTT");
}

/// `clients` concurrent clients, each counting the requests it completes before the deadline it
/// is given; the aggregate rate.
async fn run_clients<F, Fut>(clients: usize, seconds: f64, client: F) -> serde_json::Value
where
    F: Fn(Instant) -> Fut,
    Fut: std::future::Future<Output = u64> + Send + 'static,
{
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients).map(|_| tokio::spawn(client(until))).collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("client task");
    }
    let secs = started.elapsed().as_secs_f64();
    json!({ "clients": clients, "requests": total, "seconds": secs, "per_second": total as f64 / secs })
}

fn percentiles(mut us: Vec<f64>) -> serde_json::Value {
    us.sort_by(f64::total_cmp);
    let at = |q: f64| us[((us.len() - 1) as f64 * q).round() as usize];
    json!({ "n": us.len(), "p50_us": at(0.5), "p99_us": at(0.99) })
}

/// One runtime thread, as in the daemon.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let out = match Cli::parse().cmd {
        Cmd::Throughput {
            bus,
            model,
            clients,
            seconds,
        } => {
            run_clients(clients, seconds, |until| {
                let (bus, model) = (bus.clone(), model.clone());
                async move {
                    let p = proxy(&bus).await;
                    let mut done = 0u64;
                    while Instant::now() < until {
                        p.embed(&model, &[TEXT], HashMap::new())
                            .await
                            .expect("embed");
                        done += 1;
                    }
                    done
                }
            })
            .await
        }
        Cmd::MqttLatency {
            url,
            node,
            model,
            n,
        } => {
            let c = mqtt(&url, &node).await;
            for _ in 0..50 {
                mqtt_embed(&c, &model).await;
            }
            let mut us = Vec::with_capacity(n);
            for _ in 0..n {
                let t = Instant::now();
                mqtt_embed(&c, &model).await;
                us.push(t.elapsed().as_secs_f64() * 1e6);
            }
            percentiles(us)
        }
        Cmd::MqttThroughput {
            url,
            node,
            model,
            clients,
            seconds,
        } => {
            run_clients(clients, seconds, |until| {
                let (url, node, model) = (url.clone(), node.clone(), model.clone());
                async move {
                    let c = mqtt(&url, &node).await;
                    let mut done = 0u64;
                    while Instant::now() < until {
                        mqtt_embed(&c, &model).await;
                        done += 1;
                    }
                    done
                }
            })
            .await
        }
        Cmd::Latency { bus, model, n } => {
            let p = proxy(&bus).await;
            for _ in 0..50 {
                p.embed(&model, &[TEXT], HashMap::new())
                    .await
                    .expect("warm-up");
            }
            let mut us = Vec::with_capacity(n);
            for _ in 0..n {
                let t = Instant::now();
                p.embed(&model, &[TEXT], HashMap::new())
                    .await
                    .expect("embed");
                us.push(t.elapsed().as_secs_f64() * 1e6);
            }
            percentiles(us)
        }
        Cmd::HttpLatency { addr, model, n } => {
            let stream = tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            let mut conn = tokio::io::BufReader::new(stream);
            let body = json!({"model": model, "input": [TEXT]}).to_string();
            let mut us = Vec::with_capacity(n);
            for _ in 0..n + 50 {
                let t = Instant::now();
                http_post(&mut conn, "/v1/embeddings", &body).await;
                us.push(t.elapsed().as_secs_f64() * 1e6);
            }
            percentiles(us.split_off(50))
        }
        Cmd::Ping { bus, n } => {
            let conn = zbus::connection::Builder::address(bus.as_str())
                .expect("bus address")
                .build()
                .await
                .expect("connect");
            let peer = zbus::fdo::PeerProxy::builder(&conn)
                .destination(inferd_client::names::BUS_NAME)
                .expect("name")
                .path(inferd_client::names::OBJECT_PATH)
                .expect("path")
                .build()
                .await
                .expect("proxy");
            let mut us = Vec::with_capacity(n);
            for _ in 0..n + 50 {
                let t = Instant::now();
                peer.ping().await.expect("ping");
                us.push(t.elapsed().as_secs_f64() * 1e6);
            }
            percentiles(us.split_off(50))
        }
        Cmd::Inprocess { models, model, n } => {
            let runtime = inferd::runtime::find(None).expect("ONNX Runtime");
            let config = inferd::config::Config {
                engine: inferd::config::EngineConfig {
                    state_dir: Some(std::env::temp_dir()),
                    ..Default::default()
                },
                ..Default::default()
            };
            let ctx = inferd::engine::LoadContext::new(std::sync::Arc::new(runtime), &config);
            let engine =
                Engine::start(inferd::repository::Repository::new(models), ctx).expect("engine");
            engine.load(&model).await.expect("load");
            let req = || EmbedRequest {
                texts: vec![TEXT.to_owned()],
                truncate: true,
            };
            let ticket = inferd::work::job::Ticket::new(
                "bench",
                inferd::work::job::Transport::Dbus,
                Default::default(),
            );
            for _ in 0..50 {
                engine.embed(&model, req(), &ticket).await.expect("warm-up");
            }
            let mut us = Vec::with_capacity(n);
            for _ in 0..n {
                let t = Instant::now();
                engine.embed(&model, req(), &ticket).await.expect("embed");
                us.push(t.elapsed().as_secs_f64() * 1e6);
            }
            percentiles(us)
        }
    };
    println!("{out}");
}

/// One POST on a keep-alive HTTP/1.1 connection: just enough for inferd's answers, which
/// carry a Content-Length. Panics on anything but 200.
async fn http_post(
    conn: &mut tokio::io::BufReader<tokio::net::TcpStream>,
    path: &str,
    body: &str,
) -> Vec<u8> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: inferd\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.get_mut()
        .write_all([head.as_bytes(), body.as_bytes()].concat().as_slice())
        .await
        .expect("write");
    let mut line = String::new();
    conn.read_line(&mut line).await.expect("status line");
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    let mut length = 0;
    loop {
        line.clear();
        conn.read_line(&mut line).await.expect("header");
        if line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().expect("content-length");
            }
        }
    }
    let mut out = vec![0; length];
    conn.read_exact(&mut out).await.expect("body");
    out
}
