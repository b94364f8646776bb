//! Models as D-Bus objects: `/org/inferd/Inferd1/models/<escaped name>` with interface
//! `org.inferd.Inferd1.Model`, kept in step with the engine. The root's `ObjectManager` announces
//! them (InterfacesAdded/Removed), and changed properties go out as `PropertiesChanged`, so a
//! client follows every model without polling `ListModels`. Reads are live (a `Get` right
//! after `LoadModel` returns sees `ready`); the values last signalled are kept only to tell
//! what changed.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use inferd_client::names::{model_path, MODEL_INTERFACE};
use inferd_client::ModelStatus;
use tokio::sync::broadcast::{error::RecvError, Receiver};
use tokio_util::sync::CancellationToken;
use zbus::fdo::Properties;
use zbus::interface;
use zbus::names::InterfaceName;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{OwnedValue, Value};
use zbus::Connection;

use super::options::owned;
use crate::engine::{Engine, StateChange};

/// How often counters (queue depth, requests served, KV bytes in use) are compared and their
/// changes signalled; state changes are signalled at once.
const TICK: Duration = Duration::from_secs(1);

/// Property values by name.
type Values = BTreeMap<&'static str, OwnedValue>;

pub struct Model {
    engine: Engine,
    name: String,
}

impl Model {
    /// The property now, from the engine; a model removed meanwhile reads as defaults.
    fn get<T: TryFrom<OwnedValue> + Default>(&self, property: &str) -> T {
        self.engine
            .status(&self.name)
            .and_then(|s| properties(&s).remove(property))
            .and_then(|v| T::try_from(v).ok())
            .unwrap_or_default()
    }
}

/// The model's `ListModels` entry, one property per key; values the entry leaves out read as
/// 0 or "" (for example `MemoryBytes` before a load).
#[interface(name = "org.inferd.Inferd1.Model")]
impl Model {
    #[zbus(property)]
    fn name(&self) -> String {
        self.get("Name")
    }
    /// Manifest kind: `embedding`, `classification`, `tensor`, `text-generation`.
    #[zbus(property)]
    fn kind(&self) -> String {
        self.get("Kind")
    }
    /// `loading`, `ready`, `failed` or `unloaded`.
    #[zbus(property)]
    fn state(&self) -> String {
        self.get("State")
    }
    /// Execution provider in use: `cpu`, `cuda`, `tensorrt`; empty until loaded.
    #[zbus(property)]
    fn provider(&self) -> String {
        self.get("Provider")
    }
    #[zbus(property)]
    fn error(&self) -> String {
        self.get("Error")
    }
    #[zbus(property)]
    fn note(&self) -> String {
        self.get("Note")
    }
    #[zbus(property)]
    fn queue_depth(&self) -> u32 {
        self.get("QueueDepth")
    }
    #[zbus(property)]
    fn served(&self) -> u64 {
        self.get("Served")
    }
    #[zbus(property)]
    fn skipped(&self) -> u64 {
        self.get("Skipped")
    }
    #[zbus(property)]
    fn timed_out(&self) -> u64 {
        self.get("TimedOut")
    }
    #[zbus(property)]
    fn rejected(&self) -> u64 {
        self.get("Rejected")
    }
    #[zbus(property)]
    fn active(&self) -> u32 {
        self.get("Active")
    }
    #[zbus(property)]
    fn batched_tokens(&self) -> u64 {
        self.get("BatchedTokens")
    }
    #[zbus(property)]
    fn engine_build_seconds(&self) -> u64 {
        self.get("EngineBuildSeconds")
    }
    #[zbus(property)]
    fn memory_bytes(&self) -> u64 {
        self.get("MemoryBytes")
    }
    #[zbus(property)]
    fn memory_pool(&self) -> String {
        self.get("MemoryPool")
    }
    #[zbus(property)]
    fn kv_cache_bytes(&self) -> u64 {
        self.get("KvCacheBytes")
    }
    #[zbus(property)]
    fn kv_bytes_per_token(&self) -> u64 {
        self.get("KvBytesPerToken")
    }
    #[zbus(property)]
    fn kv_bytes_in_use(&self) -> u64 {
        self.get("KvBytesInUse")
    }
    #[zbus(property)]
    fn full_context_streams(&self) -> u32 {
        self.get("FullContextStreams")
    }
    /// Grows every second, so it is read, never signalled.
    #[zbus(property(emits_changed_signal = "false"))]
    fn idle_seconds(&self) -> u64 {
        self.get("IdleSeconds")
    }
    #[zbus(property)]
    fn last_error(&self) -> String {
        self.get("LastError")
    }
}

/// Properties that change without a signal (see `idle_seconds`).
const UNSIGNALLED: &[&str] = &["IdleSeconds"];

fn properties(s: &ModelStatus) -> Values {
    let text = |o: &Option<String>| owned(o.clone().unwrap_or_default());
    let kv = s.kv.unwrap_or_default();
    BTreeMap::from([
        ("Name", owned(s.name.as_str())),
        ("Kind", owned(s.kind.as_str())),
        ("State", owned(s.state.as_str())),
        ("Provider", owned(s.provider.as_str())),
        ("Error", text(&s.error)),
        ("Note", text(&s.note)),
        ("QueueDepth", owned(s.queue_depth)),
        ("Served", owned(s.served)),
        ("Skipped", owned(s.skipped)),
        ("TimedOut", owned(s.timed_out)),
        ("Rejected", owned(s.rejected)),
        ("Active", owned(s.active)),
        ("BatchedTokens", owned(s.batched_tokens)),
        (
            "EngineBuildSeconds",
            owned(s.engine_build_s.unwrap_or_default()),
        ),
        ("MemoryBytes", owned(s.memory_bytes.unwrap_or_default())),
        ("MemoryPool", text(&s.memory_pool)),
        ("KvCacheBytes", owned(kv.kv_cache_bytes)),
        ("KvBytesPerToken", owned(kv.kv_bytes_per_token)),
        ("KvBytesInUse", owned(kv.kv_bytes_in_use)),
        ("FullContextStreams", owned(kv.full_context_streams)),
        ("IdleSeconds", owned(s.idle_s.unwrap_or_default())),
        ("LastError", text(&s.last_error)),
    ])
}

/// The model objects on the bus, by model name, with the values last signalled.
#[derive(Default)]
pub struct Published {
    objects: HashMap<String, Values>,
}

impl Published {
    /// Makes the served objects match the engine's models: adds new ones, removes gone ones,
    /// and signals what changed in the rest.
    pub async fn sync(&mut self, conn: &Connection, engine: &Engine) {
        let models = engine.list();
        let server = conn.object_server();
        let gone: Vec<String> = self
            .objects
            .keys()
            .filter(|n| !models.iter().any(|m| &m.name == *n))
            .cloned()
            .collect();
        for name in gone {
            self.objects.remove(&name);
            if let Err(e) = server.remove::<Model, _>(model_path(&name)).await {
                tracing::warn!("cannot remove model object {name}: {e}");
            }
        }
        for m in &models {
            let new = properties(m);
            match self.objects.get_mut(&m.name) {
                Some(values) => signal_changes(conn, &m.name, values, new).await,
                None => {
                    let object = Model {
                        engine: engine.clone(),
                        name: m.name.clone(),
                    };
                    match server.at(model_path(&m.name), object).await {
                        Ok(_) => {
                            self.objects.insert(m.name.clone(), new);
                        }
                        Err(e) => tracing::warn!("cannot serve model object {}: {e}", m.name),
                    }
                }
            }
        }
    }
}

async fn signal_changes(conn: &Connection, name: &str, old: &mut Values, new: Values) {
    let changed: HashMap<&str, Value<'_>> = new
        .iter()
        .filter(|(k, v)| !UNSIGNALLED.contains(k) && old.get(*k) != Some(*v))
        .filter_map(|(k, v)| Some((*k, Value::from(v.try_clone().ok()?))))
        .collect();
    *old = new;
    if changed.is_empty() {
        return;
    }
    let emitted = async {
        let emitter = SignalEmitter::new(conn, model_path(name))?;
        let iface = InterfaceName::from_static_str_unchecked(MODEL_INTERFACE);
        Properties::properties_changed(&emitter, iface, changed, Cow::Borrowed(&[])).await
    };
    if let Err(e) = emitted.await {
        tracing::debug!("model {name}: PropertiesChanged not sent: {e}");
    }
}

/// Keeps the model objects in step until `stop`. `changes` was subscribed before `published`
/// was first synced, so no change falls between.
pub async fn follow(
    conn: Connection,
    engine: Engine,
    mut published: Published,
    mut changes: Receiver<StateChange>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = changes.recv() => match r {
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        published.sync(&conn, &engine).await;
    }
}
