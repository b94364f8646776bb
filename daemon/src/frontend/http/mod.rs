//! The OpenAI-compatible HTTP frontend: the third transport beside D-Bus and MQTT, on the same
//! engine, options, priorities and tickets. It listens on a unix socket by default (its
//! permissions are the access control) and optionally on TCP, where a configured bearer
//! token is required. tower's layers bound the body size, the requests served at once and
//! the time to an answer.

mod embeddings;
mod errors;
mod generate;
mod wire;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::limit::ConcurrencyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::config::{ConfigError, HttpConfig};
use crate::engine::Engine;
use crate::listen::{self, Endpoint, Peer};
use crate::work::job::{Priority, Ticket, Transport};

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("http.listen {endpoint}: {source}")]
    Bind {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
}

/// What every handler shares.
#[derive(Clone)]
pub struct Api {
    engine: Engine,
    requests: Arc<AtomicU64>,
}

impl Api {
    /// A new request's ticket: interactive unless its options say not. A unix-socket client's
    /// uid names it, so its cached prompts are its own; TCP clients share with nobody.
    fn ticket(&self, peer: Peer) -> Ticket {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        let t = Ticket::new(
            format!("h{}-{n}", std::process::id()),
            Transport::Http,
            Priority::Interactive,
        );
        match peer {
            Peer::Unix { uid: Some(uid) } => t.with_caller(format!("uid:{uid}")),
            _ => t,
        }
    }
}

/// A running HTTP frontend.
pub struct Frontend {
    stop: CancellationToken,
    servers: Vec<JoinHandle<()>>,
}

/// Binds every configured endpoint, then serves them all.
pub async fn serve(engine: Engine, cfg: &HttpConfig) -> Result<Frontend, HttpError> {
    let endpoints = cfg.endpoints()?;
    let mode = cfg.mode()?;
    let token = cfg.token()?.map(Arc::<str>::from);
    let api = Api {
        engine,
        requests: Arc::default(),
    };
    let app = routes(api, cfg);
    let stop = CancellationToken::new();
    let mut bound = Vec::new();
    for e in &endpoints {
        let b = listen::bind(e, Some(mode))
            .await
            .map_err(|source| HttpError::Bind {
                endpoint: e.to_string(),
                source,
            })?;
        bound.push((e, b));
    }
    let mut servers = Vec::new();
    for (e, b) in bound {
        // Only TCP asks for the token: on a unix socket the file's permissions decide.
        let app = match (e, &token) {
            (Endpoint::Tcp(_), Some(token)) => app
                .clone()
                .layer(middleware::from_fn_with_state(token.clone(), require_token)),
            _ => app.clone(),
        };
        tracing::info!("OpenAI-compatible API on {e}/v1");
        servers.push(listen::spawn(b, app, stop.clone()));
    }
    Ok(Frontend { stop, servers })
}

fn routes(api: Api, cfg: &HttpConfig) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(generate::chat))
        .route("/v1/completions", post(generate::completions))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/v1/models", get(embeddings::models))
        .route("/health", get(embeddings::health))
        .fallback(|| async { errors::ApiError::not_found() })
        .with_state(api)
        .layer(DefaultBodyLimit::max(cfg.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            Duration::from_secs(cfg.request_timeout_s),
        ))
        .layer(ConcurrencyLimitLayer::new(cfg.max_concurrent))
}

/// `Authorization: Bearer <token>`, compared in constant time.
async fn require_token(State(token): State<Arc<str>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if constant_time_eq(given.as_bytes(), token.as_bytes()) {
        return next.run(req).await;
    }
    errors::ApiError::unauthorized().into_response()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Frontend {
    /// Stops accepting, lets answers in progress finish (up to `grace`), and returns.
    pub async fn close(self, grace: Duration) {
        self.stop.cancel();
        listen::join(self.servers, grace).await;
    }
}
