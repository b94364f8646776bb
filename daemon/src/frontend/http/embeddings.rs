//! `POST /v1/embeddings`, `GET /v1/models` and `GET /health`.

use axum::extract::{ConnectInfo, State};
use axum::Json;
use base64::Engine as _;
use serde_json::{json, Value};

use super::errors::{ApiError, Body};
use super::wire::EmbeddingRequest;
use super::Api;
use crate::frontend::options;
use crate::listen::Peer;

pub async fn embeddings(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Body(req): Body<EmbeddingRequest>,
) -> Result<Json<Value>, ApiError> {
    let texts = match req.input {
        Value::String(s) => vec![s],
        Value::Array(a) if a.iter().all(Value::is_string) && !a.is_empty() => a
            .into_iter()
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .collect(),
        _ => return Err(ApiError::invalid(
            "input must be a string or a non-empty array of strings (token arrays are not taken)",
        )),
    };
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "encoding_format must be \"float\" or \"base64\", got {other:?}"
            )))
        }
    };
    let mut t = api.ticket(peer);
    let embed = options::embedding(&req.rest, texts, &mut t)
        .map_err(|e| ApiError::for_request(e, &t.id))?;
    let out = api
        .engine
        .embed(&req.model, embed, &t)
        .await
        .map_err(|e| ApiError::for_request(e, &t.id))?;
    if let Some(d) = req.dimensions {
        // Models trained for shortening (Matryoshka) are not told apart from others, so only
        // the model's own size is taken.
        let own = out.vectors.first().map_or(0, Vec::len);
        if d as usize != own {
            return Err(ApiError::invalid(format!(
                "dimensions = {d} is not supported: {} makes {own}-dimensional embeddings",
                req.model
            )));
        }
    }
    let data: Vec<Value> = out
        .vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let tokens: u32 = out.tokens.iter().sum();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": req.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })))
}

/// Every model in the repository, with inferd's kind and state beside OpenAI's fields.
pub async fn models(State(api): State<Api>) -> Json<Value> {
    let data: Vec<Value> = api
        .engine
        .list()
        .into_iter()
        .map(|m| {
            json!({
                "id": m.name,
                "object": "model",
                "created": 0,
                "owned_by": "inferd",
                "kind": m.kind,
                "state": m.state.as_str(),
            })
        })
        .collect();
    Json(json!({"object": "list", "data": data}))
}

/// The daemon's health, as D-Bus `Health()` reports it.
pub async fn health(State(api): State<Api>) -> Json<inferd_client::Health> {
    Json(crate::health::check(&api.engine))
}
