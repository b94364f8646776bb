//! `inferctl --mqtt URL [--node N | --pool] …`: the same commands through a broker. Models come
//! from the daemons' retained status; management stays on D-Bus.

use std::collections::HashMap;
use std::time::Duration;

use clap::Args;
use inferd_client::mqtt::{MqttClient, Target};
use inferd_client::{Error, ModelState, ModelStatus};
use serde_json::{json, Value};

use crate::generate::{self, Transport};
use crate::{output, tensor_arg, Command};

#[derive(Args)]
pub struct MqttArgs {
    /// Use MQTT instead of D-Bus: the broker, mqtt://host[:port]
    #[arg(long, global = true, env = "INFERD_MQTT")]
    pub mqtt: Option<String>,
    /// With --mqtt: the daemon's node name
    #[arg(long, global = true, conflicts_with = "pool")]
    pub node: Option<String>,
    /// With --mqtt: any daemon of the pool
    #[arg(long, global = true)]
    pub pool: bool,
    /// With --mqtt: the daemons' topic prefix
    #[arg(long, global = true, default_value = "inferd")]
    pub prefix: String,
    /// With --mqtt: where answers come back (this client's id is added); outside the
    /// daemons' prefix, and under their mqtt.reply_prefix when they set one
    #[arg(long, global = true, default_value = "replies")]
    pub replies: String,
}

fn status_rows(node: &str, status: &Value) -> Vec<ModelStatus> {
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

fn texts_input(texts: &[String]) -> Value {
    json!({ "texts": texts })
}

pub async fn run(url: &str, a: &MqttArgs, json_out: bool, command: Command) -> Result<(), Error> {
    let target = match (&a.node, a.pool) {
        (Some(n), _) => Target::Node(n.clone()),
        (None, true) => Target::Pool,
        (None, false) => {
            return Err(Error::InvalidInput(
                "--mqtt needs --node NAME or --pool".into(),
            ))
        }
    };
    let client = MqttClient::connect(url, &a.prefix, &a.replies, target.clone()).await?;
    match command {
        Command::Models => {
            let statuses = client.statuses(Duration::from_millis(500)).await;
            let mut rows = Vec::new();
            for (node, s) in &statuses {
                let wanted = match &target {
                    Target::Node(n) => n == node,
                    Target::Pool => true,
                };
                if wanted && s["state"] == "online" {
                    rows.extend(status_rows(node, s));
                }
            }
            if rows.is_empty() {
                return Err(Error::ModelNotFound(format!(
                    "no online inferd under {}/ on {url}",
                    a.prefix
                )));
            }
            output::models(&rows, json_out);
        }
        Command::Embed {
            model,
            texts,
            similarity,
            no_truncate,
            timeout_ms,
        } => {
            let mut options = json!({});
            if no_truncate {
                options["truncate"] = json!(false);
            }
            if let Some(t) = timeout_ms {
                options["timeout_ms"] = json!(t);
            }
            let r = client
                .request(&model, "embed", texts_input(&texts), options)
                .await?;
            let vectors: Vec<Vec<f64>> = serde_json::from_value(r.result["embeddings"].clone())
                .map_err(|e| Error::Internal(format!("unexpected reply: {e}")))?;
            let info = json!({"truncated": r.result["truncated"], "tokens": null});
            output::embeddings(&texts, &vectors, &info, similarity, json_out);
        }
        Command::Classify {
            model,
            texts,
            top_k,
        } => {
            let r = client
                .request(
                    &model,
                    "classify",
                    texts_input(&texts),
                    json!({ "top_k": top_k }),
                )
                .await?;
            let out: Vec<Vec<(String, f64)>> = r.result["labels"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|row| {
                    row.as_array()
                        .into_iter()
                        .flatten()
                        .map(|x| {
                            let label = x["label"].as_str().unwrap_or_default().to_owned();
                            (label, x["score"].as_f64().unwrap_or_default())
                        })
                        .collect()
                })
                .collect();
            output::classes(&texts, &out, json_out);
        }
        Command::Infer { model, inputs } => {
            let mut tensors = serde_json::Map::new();
            for arg in &inputs {
                let (name, t) = tensor_arg::parse(arg).map_err(Error::InvalidInput)?;
                tensors.insert(name, inferd_client::tensor::json::to_json(&t));
            }
            let r = client
                .request(&model, "infer", json!({ "inputs": tensors }), json!({}))
                .await?;
            let mut out = HashMap::new();
            for (name, v) in r.result["outputs"].as_object().into_iter().flatten() {
                let t = inferd_client::tensor::json::from_json(v).map_err(Error::Internal)?;
                out.insert(name.clone(), t);
            }
            output::tensors(&out, json_out);
        }
        Command::Generate {
            model,
            prompt,
            options,
        } => {
            let t = Transport::Mqtt(&client);
            generate::generate(&t, &model, &prompt, &options, json_out).await?
        }
        Command::Chat {
            model,
            system,
            options,
        } => generate::chat(&Transport::Mqtt(&client), &model, system, &options).await?,
        Command::Health => {
            // The retained status carries the same health as D-Bus `Health()`.
            let statuses = client.statuses(Duration::from_millis(500)).await;
            let wanted: serde_json::Map<String, serde_json::Value> = statuses
                .into_iter()
                .filter(|(node, _)| match &target {
                    Target::Node(n) => n == node,
                    Target::Pool => true,
                })
                .collect();
            if wanted.is_empty() {
                return Err(Error::ModelNotFound(format!(
                    "no inferd status under {}/ on {url}",
                    a.prefix
                )));
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&wanted).unwrap_or_default()
            );
        }
        Command::Load { .. }
        | Command::Unload { .. }
        | Command::Reload
        | Command::Warmup { .. } => {
            return Err(Error::AccessDenied(
                "management (load, unload, reload) is only on D-Bus, where callers are authorized"
                    .into(),
            ))
        }
        Command::Import(_) | Command::Pull(_) => {}
    }
    Ok(())
}
