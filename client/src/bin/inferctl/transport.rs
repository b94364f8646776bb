//! How inferctl reaches a daemon: D-Bus (the default) or MQTT (`--mqtt`). Each operation is a
//! method here with an arm per transport, so the commands (`commands.rs`) are written once.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use inferd_client::messages::{
    ClassifyResult, EmbedResult, InferInput, InferResult, NodeStatus, TextsInput,
};
use inferd_client::mqtt::{MqttClient, Target};
use inferd_client::stream::{Job, Stream};
use inferd_client::{Error, Health, Inferd1Proxy, ModelState, ModelStatus, WireTensor};
use serde_json::{json, Value as Json};
use zbus::zvariant::Value;
use zbus::Connection;

pub enum Transport<'a> {
    Bus {
        conn: &'a Connection,
        proxy: Inferd1Proxy<'a>,
    },
    Mqtt(Broker<'a>),
}

/// The daemons `--node`/`--pool` names, behind the broker at `url`.
pub struct Broker<'a> {
    pub client: &'a MqttClient,
    pub target: Target,
    /// The broker's URL and the daemons' prefix, for messages.
    pub url: &'a str,
    pub prefix: &'a str,
}

impl Broker<'_> {
    /// Their retained statuses, by node.
    async fn statuses(&self) -> BTreeMap<String, NodeStatus> {
        self.client
            .statuses(Duration::from_millis(500))
            .await
            .into_iter()
            .filter(|(node, _)| match &self.target {
                Target::Node(n) => n == node,
                Target::Pool => true,
            })
            .collect()
    }

    fn nobody(&self, what: &str) -> Error {
        Error::ModelNotFound(format!("no {what} under {}/ on {}", self.prefix, self.url))
    }
}

/// Management calls: D-Bus only, where callers are authorized.
pub enum Manage<'a> {
    Load(&'a str),
    Unload(&'a str),
    Reload,
    Warmup(&'a str),
}

/// `inferctl health`: the daemon's `Health()` over D-Bus; over MQTT each daemon's retained
/// status, which carries the same health.
pub enum HealthReport {
    Daemon(Health),
    Statuses(BTreeMap<String, NodeStatus>),
}

/// A `ListModels` entry, as a job's `Finished` or `Warmup` returns it.
fn status(entry: HashMap<String, zbus::zvariant::OwnedValue>) -> Result<ModelStatus, Error> {
    ModelStatus::from_dict(&entry).map_err(unexpected)
}

fn unexpected(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("unexpected reply: {e}"))
}

/// A daemon's retained status as `ListModels` rows.
fn status_rows(node: &str, status: &NodeStatus) -> Vec<ModelStatus> {
    status
        .models
        .iter()
        .flatten()
        .map(|m| ModelStatus {
            name: m.name.clone(),
            kind: m.kind.clone(),
            state: ModelState::parse(&m.state).unwrap_or(ModelState::Failed),
            provider: m.provider.clone(),
            error: m.error.clone(),
            note: Some(format!("node {node}")),
            engine_build_s: m.engine_build_s,
            queue_depth: m.queue_depth,
            active: m.active,
            memory_bytes: m.memory_bytes,
            memory_pool: m.memory_pool.clone(),
            idle_s: m.idle_s,
            last_error: m.last_error.clone(),
            ..Default::default()
        })
        .collect()
}

impl Transport<'_> {
    pub async fn models(&self) -> Result<Vec<ModelStatus>, Error> {
        match self {
            Transport::Bus { proxy, .. } => proxy
                .list_models()
                .await?
                .iter()
                .map(ModelStatus::from_dict)
                .collect::<Result<Vec<_>, _>>()
                .map_err(unexpected),
            Transport::Mqtt(b) => {
                let rows: Vec<ModelStatus> = b
                    .statuses()
                    .await
                    .iter()
                    .filter(|(_, s)| s.state == "online")
                    .flat_map(|(node, s)| status_rows(node, s))
                    .collect();
                if rows.is_empty() {
                    return Err(b.nobody("online inferd"));
                }
                Ok(rows)
            }
        }
    }

    pub async fn health(&self) -> Result<HealthReport, Error> {
        match self {
            Transport::Bus { proxy, .. } => Health::from_dict(&proxy.health().await?)
                .map(HealthReport::Daemon)
                .map_err(unexpected),
            Transport::Mqtt(b) => {
                let statuses = b.statuses().await;
                if statuses.is_empty() {
                    return Err(b.nobody("inferd status"));
                }
                Ok(HealthReport::Statuses(statuses))
            }
        }
    }

    pub async fn manage(&self, m: Manage<'_>) -> Result<Option<ModelStatus>, Error> {
        let Transport::Bus { proxy, .. } = self else {
            return Err(Error::AccessDenied(
                "management (load, unload, reload) is only on D-Bus, where callers are authorized"
                    .into(),
            ));
        };
        // Loads and warmups can take minutes (a TensorRT build): they run as jobs, whose end
        // is a signal, so no method-call timeout applies.
        let job = match m {
            Manage::Unload(name) => {
                proxy.unload_model(name).await?;
                return Ok(None);
            }
            Manage::Load(name) => Job::Load(name),
            Manage::Reload => Job::Reload,
            Manage::Warmup(name) => Job::Warmup(name),
        };
        let info = match Stream::job(proxy.inner().connection(), job).await {
            Err(Error::ZBus(zbus::Error::MethodError(name, _, _)))
                if name.as_str() == "org.freedesktop.DBus.Error.UnknownMethod" =>
            {
                // A daemon from before the job forms: the blocking calls.
                match job {
                    Job::Load(name) => proxy.load_model(name).await?,
                    Job::Reload => proxy.reload().await?,
                    Job::Warmup(name) => return status(proxy.warmup(name).await?).map(Some),
                }
                return Ok(None);
            }
            started => started?.wait().await?,
        };
        match job {
            Job::Reload => Ok(None),
            _ => status(info).map(Some),
        }
    }

    /// The vectors, and per text whether it was truncated and its token count (`null` where
    /// the transport does not say).
    pub async fn embed(
        &self,
        model: &str,
        texts: &[String],
        truncate: bool,
        timeout_ms: Option<u32>,
    ) -> Result<(Vec<Vec<f64>>, Json), Error> {
        match self {
            Transport::Bus { proxy, .. } => {
                let mut opts: HashMap<&str, Value<'_>> = HashMap::new();
                if !truncate {
                    opts.insert("truncate", Value::Bool(false));
                }
                if let Some(t) = timeout_ms {
                    opts.insert("timeout_ms", Value::U32(t));
                }
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                let (vectors, info) = proxy.embed_with_info(model, &refs, opts).await?;
                let field = |k: &str| info.get(k).and_then(|v| v.try_clone().ok());
                let truncated: Vec<bool> = field("truncated")
                    .and_then(|v| v.try_into().ok())
                    .unwrap_or_default();
                let tokens: Vec<u32> = field("tokens")
                    .and_then(|v| v.try_into().ok())
                    .unwrap_or_default();
                Ok((vectors, json!({ "truncated": truncated, "tokens": tokens })))
            }
            Transport::Mqtt(Broker { client, .. }) => {
                let mut options = serde_json::Map::new();
                if !truncate {
                    options.insert("truncate".into(), json!(false));
                }
                if let Some(t) = timeout_ms {
                    options.insert("timeout_ms".into(), json!(t));
                }
                let input = TextsInput {
                    texts: texts.to_vec(),
                };
                let (r, _): (EmbedResult, _) =
                    client.request(model, "embed", input, options).await?;
                let vectors = r
                    .embeddings
                    .into_iter()
                    .map(|v| v.into_iter().map(f64::from).collect())
                    .collect();
                Ok((vectors, json!({"truncated": r.truncated, "tokens": null})))
            }
        }
    }

    pub async fn classify(
        &self,
        model: &str,
        texts: &[String],
        top_k: u32,
    ) -> Result<Vec<Vec<(String, f64)>>, Error> {
        match self {
            Transport::Bus { proxy, .. } => {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                let opts = HashMap::from([("top_k", Value::U32(top_k))]);
                Ok(proxy.classify(model, &refs, opts).await?)
            }
            Transport::Mqtt(Broker { client, .. }) => {
                let input = TextsInput {
                    texts: texts.to_vec(),
                };
                let options = serde_json::Map::from_iter([("top_k".into(), json!(top_k))]);
                let (r, _): (ClassifyResult, _) =
                    client.request(model, "classify", input, options).await?;
                Ok(r.labels
                    .into_iter()
                    .map(|row| {
                        row.into_iter()
                            .map(|l| (l.label, f64::from(l.score)))
                            .collect()
                    })
                    .collect())
            }
        }
    }

    pub async fn infer(
        &self,
        model: &str,
        inputs: HashMap<String, WireTensor>,
    ) -> Result<HashMap<String, WireTensor>, Error> {
        use inferd_client::tensor::json::{from_json, to_json};
        match self {
            Transport::Bus { proxy, .. } => Ok(proxy.infer(model, inputs).await?),
            Transport::Mqtt(Broker { client, .. }) => {
                let inputs = InferInput {
                    inputs: inputs
                        .iter()
                        .map(|(n, t)| (n.clone(), to_json(t)))
                        .collect(),
                };
                let (r, _): (InferResult, _) = client
                    .request(model, "infer", inputs, Default::default())
                    .await?;
                let mut out = HashMap::new();
                for (name, v) in r.outputs {
                    let t = from_json(&v).map_err(Error::Internal)?;
                    out.insert(name, t);
                }
                Ok(out)
            }
        }
    }
}
