//! How inferctl reaches a daemon: D-Bus (the default) or MQTT (`--mqtt`). Each operation is a
//! method here with an arm per transport, so the commands (`commands.rs`) are written once.

use std::collections::HashMap;
use std::time::Duration;

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
    async fn statuses(&self) -> serde_json::Map<String, Json> {
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
    Statuses(serde_json::Map<String, Json>),
}

fn unexpected(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("unexpected reply: {e}"))
}

/// A daemon's retained status as `ListModels` rows.
fn status_rows(node: &str, status: &Json) -> Vec<ModelStatus> {
    status["models"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| ModelStatus {
            name: m["name"].as_str().unwrap_or_default().to_owned(),
            kind: m["kind"].as_str().unwrap_or_default().to_owned(),
            state: ModelState::parse(m["state"].as_str().unwrap_or_default())
                .unwrap_or(ModelState::Failed),
            provider: m["provider"].as_str().unwrap_or_default().to_owned(),
            error: m["error"].as_str().map(str::to_owned),
            note: Some(format!("node {node}")),
            engine_build_s: m["engine_build_s"].as_u64(),
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
                    .filter(|(_, s)| s["state"] == "online")
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
        let info = Stream::job(proxy.inner().connection(), job)
            .await?
            .wait()
            .await?;
        match job {
            Job::Reload => Ok(None),
            _ => ModelStatus::from_dict(&info).map(Some).map_err(unexpected),
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
                let mut options = json!({});
                if !truncate {
                    options["truncate"] = json!(false);
                }
                if let Some(t) = timeout_ms {
                    options["timeout_ms"] = json!(t);
                }
                let r = client
                    .request(model, "embed", json!({ "texts": texts }), options)
                    .await?;
                let vectors =
                    serde_json::from_value(r.result["embeddings"].clone()).map_err(unexpected)?;
                Ok((
                    vectors,
                    json!({"truncated": r.result["truncated"], "tokens": null}),
                ))
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
                let r = client
                    .request(
                        model,
                        "classify",
                        json!({ "texts": texts }),
                        json!({ "top_k": top_k }),
                    )
                    .await?;
                let row = |row: &Json| -> Vec<(String, f64)> {
                    row.as_array()
                        .into_iter()
                        .flatten()
                        .map(|x| {
                            let label = x["label"].as_str().unwrap_or_default().to_owned();
                            (label, x["score"].as_f64().unwrap_or_default())
                        })
                        .collect()
                };
                Ok(r.result["labels"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(row)
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
                let inputs: serde_json::Map<String, Json> = inputs
                    .iter()
                    .map(|(n, t)| (n.clone(), to_json(t)))
                    .collect();
                let r = client
                    .request(model, "infer", json!({ "inputs": inputs }), json!({}))
                    .await?;
                let mut out = HashMap::new();
                for (name, v) in r.result["outputs"].as_object().into_iter().flatten() {
                    out.insert(name.clone(), from_json(v).map_err(Error::Internal)?);
                }
                Ok(out)
            }
        }
    }
}
