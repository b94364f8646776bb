//! The MQTT frontend: requests on `{prefix}/{node}/req/{model}/{op}` (and the shared pool
//! topic), replies to the MQTT 5 Response Topic or the payload's `reply_to`, a retained status
//! with a Last Will, and the same engine calls and error set as D-Bus.
//!
//! link.rs owns the connection; handler.rs takes each message; ops.rs runs it on the engine.

mod dedupe;
mod event_loop;
#[doc(hidden)]
pub mod fuzz;
mod grants;
mod handler;
mod homeassistant;
mod intake;
mod link;
mod ops;
mod reply;
mod resend;
mod routes;
mod status;
mod topics;
mod wire;

#[doc(hidden)]
pub use wire::parse as fuzz_parse;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use self::handler::Handler;
use self::homeassistant::Discovery;
use self::intake::Intake;
use self::link::{Client, Connect, Out};
use self::topics::Topics;
use crate::config::ConfigError;
use crate::config::MqttConfig;
use crate::engine::Engine;

/// A running MQTT frontend; `close` publishes the offline status and disconnects.
const STATUS_REFRESH: std::time::Duration = std::time::Duration::from_secs(30);

pub struct Frontend {
    client: Client,
    topics: Topics,
    /// Home Assistant discovery is on: `close` also says `offline` on the availability topic.
    homeassistant: bool,
    stop: watch::Sender<bool>,
    /// Owns the event loop; it ends after sending our DISCONNECT.
    link: JoinHandle<()>,
    /// Republishes the status; stopped first on close, so `offline` is the last word.
    status: JoinHandle<()>,
    on_unsubscribe: watch::Receiver<u64>,
    online: watch::Receiver<bool>,
}

fn read_password(cfg: &MqttConfig) -> Result<Option<(String, String)>, ConfigError> {
    let Some(user) = &cfg.username else {
        return Ok(None);
    };
    let password = match &cfg.password_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| {
                ConfigError::Invalid(format!("mqtt.password_file {}: {e}", path.display()))
            })?
            .trim_end_matches(['\n', '\r'])
            .to_owned(),
        None => String::new(),
    };
    Ok(Some((user.clone(), password)))
}

/// Debian's bundle of the system's trusted CAs, used when `ca_file` is not set.
const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";

fn tls_config(cfg: &MqttConfig) -> Result<rumqttc::TlsConfiguration, ConfigError> {
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|e| ConfigError::Invalid(format!("mqtt.{key} {}: {e}", path.display())))
    };
    let ca = match &cfg.ca_file {
        Some(p) => read("ca_file", p)?,
        None => read(
            "ca_file (not set, so the system bundle)",
            std::path::Path::new(SYSTEM_CAS),
        )?,
    };
    let client_auth = match (&cfg.cert_file, &cfg.key_file) {
        (Some(c), Some(k)) => Some((read("cert_file", c)?, read("key_file", k)?)),
        (None, None) => None,
        _ => {
            return Err(ConfigError::Invalid(
                "mqtt.cert_file and mqtt.key_file go together".into(),
            ))
        }
    };
    Ok(rumqttc::TlsConfiguration::Simple {
        ca,
        alpn: None,
        client_auth,
    })
}

pub fn serve(engine: Engine, cfg: &MqttConfig) -> Result<Frontend, ConfigError> {
    cfg.validate()?;
    let endpoint = cfg.endpoint()?;
    let tls = endpoint.tls.then(|| tls_config(cfg)).transpose()?;
    let topics = Topics {
        prefix: cfg.prefix.clone(),
        node: cfg.node_name(),
    };
    let connect = Connect {
        host: endpoint.host,
        port: endpoint.port,
        client_id: cfg.client_id(),
        keep_alive: cfg.keep_alive(),
        credentials: read_password(cfg)?,
        will: (topics.status(), status::offline()),
        subscriptions: topics
            .subscriptions()
            .into_iter()
            .chain(cfg.route.iter().map(|r| r.from.clone()))
            .chain(cfg.homeassistant.then(Discovery::birth_topic))
            .collect(),
        max_payload: cfg.max_payload,
        max_packet: cfg.max_packet,
        tls,
    };
    let (client, link) = link::client(cfg, &connect);
    let (stop, stop_rx) = watch::channel(false);
    let (connected, mut on_connect) = watch::channel(0u64);
    let (unsubscribed, on_unsubscribe) = watch::channel(0u64);
    let (online_tx, online) = watch::channel(false);
    let (tx, mut rx) = mpsc::channel(1024);
    let events = link::Events {
        connected,
        online: online_tx,
        unsubscribed,
    };
    let link = tokio::spawn(link().run(tx, events, stop_rx));

    let router = routes::Router::start(&cfg.route, &engine, &client, topics.route_errors());
    let intake = Intake::new(cfg, topics.clone());
    let handler = Arc::new(Handler::new(engine.clone(), client.clone(), intake, router));
    let (births, mut on_birth) = watch::channel(0u64);
    let homeassistant = cfg.homeassistant;
    // Ends when the link does (it holds the sender), and with it the routes' workers.
    tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if homeassistant && m.topic == Discovery::birth_topic() {
                if Discovery::is_birth(&m) {
                    births.send_modify(|n| *n += 1);
                }
                continue;
            }
            handler.handle(m);
        }
    });

    // The retained status: on every (re)connection and every model state change; with Home
    // Assistant, its configs when the connection, Home Assistant or the set of models is new.
    let (status_client, status_topic) = (client.clone(), topics.status());
    let mut discovery = homeassistant.then(|| Discovery::new(topics.clone()));
    let mut changes = engine.subscribe();
    let status = tokio::spawn(async move {
        // Also refreshed now and then, so queue depth and uptime in the retained message stay
        // current.
        let mut refresh = tokio::time::interval(STATUS_REFRESH);
        refresh.tick().await;
        // Home Assistant hears everything again on a new connection and on its birth.
        let mut again = true;
        loop {
            tokio::select! {
                _ = refresh.tick() => {}
                r = on_connect.changed() => if r.is_err() { return } else { again = true },
                r = on_birth.changed() => if r.is_err() { return } else { again = true },
                r = changes.recv() => if matches!(r, Err(tokio::sync::broadcast::error::RecvError::Closed)) { return },
            }
            let health = crate::health::check(&engine);
            let mut out = vec![Out::retained(&status_topic, status::online(&health))];
            if let Some(d) = discovery.as_mut() {
                let names = health.models.iter().map(|m| m.name.as_str());
                out.extend(d.announce(names, std::mem::take(&mut again)));
            }
            for o in out {
                if let Err(e) = status_client.publish(o).await {
                    tracing::debug!("cannot queue the MQTT status: {e}");
                }
            }
        }
    });
    tracing::info!(
        url = %cfg.url,
        node = %topics.node,
        prefix = %topics.prefix,
        protocol = cfg.protocol,
        "serving MQTT"
    );
    Ok(Frontend {
        client,
        topics,
        homeassistant,
        stop,
        link,
        status,
        on_unsubscribe,
        online,
    })
}

impl Frontend {
    /// Follows whether the broker connection is up.
    pub fn online(&self) -> watch::Receiver<bool> {
        self.online.clone()
    }

    /// Stops taking pool requests, so the broker sends them to the rest of the pool while this
    /// daemon finishes what it accepted. Once the broker acknowledges, every pool request it
    /// sent before is already here; a moment more lets them reach the engine's queues before
    /// admission closes.
    pub async fn leave_pool(&self) {
        let mut acked = self.on_unsubscribe.clone();
        acked.mark_unchanged();
        self.client
            .unsubscribe(&self.topics.pool_subscription())
            .await;
        if tokio::time::timeout(Duration::from_secs(2), acked.changed())
            .await
            .is_err()
        {
            tracing::warn!("the broker did not acknowledge leaving the pool within 2 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    /// Publishes the offline status and disconnects; the event loop sends both (in order) and
    /// ends. A broker that is away gets 2 s; its Last Will says offline anyway.
    pub async fn close(self) {
        self.status.abort();
        let offline = Out::retained(&self.topics.status(), status::offline());
        let unavailable = self
            .homeassistant
            .then(|| Discovery::availability(&self.topics, false));
        let bye = async {
            for o in unavailable.into_iter().chain([offline]) {
                self.client.publish(o).await?;
            }
            self.client.disconnect().await;
            Ok::<_, link::PublishError>(())
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), bye).await;
        let mut link = self.link;
        if tokio::time::timeout(Duration::from_secs(2), &mut link)
            .await
            .is_err()
        {
            let _ = self.stop.send(true);
            link.abort();
        }
    }
}
