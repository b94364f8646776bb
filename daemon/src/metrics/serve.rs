//! The scrape endpoint: `GET /metrics` on a loopback TCP port or a unix socket, on the same
//! HTTP stack as the OpenAI-compatible API (`listen.rs`).

use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;
use tower::limit::ConcurrencyLimitLayer;

use crate::engine::Engine;
use crate::listen::{self, Endpoint, EndpointError, Remote};

/// Scrapes answered at once; more wait their turn.
const CONNECTIONS: usize = 8;

/// `metrics.listen`: `127.0.0.1:9464`, `[::1]:9464` or `unix:/run/inferd/metrics.sock`. Only
/// loopback addresses: the metrics name models and load, which is not for the network.
pub fn endpoint(listen: &str) -> Result<Endpoint, EndpointError> {
    Endpoint::parse(
        "metrics.listen",
        listen,
        Remote::Refused("use 127.0.0.1 or ::1 (or a unix socket)"),
    )
}

fn router(engine: Engine) -> Router {
    let scrape = move || {
        let engine = engine.clone();
        async move {
            (
                [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                crate::metrics::get().render(&engine.list()),
            )
        }
    };
    Router::new()
        .route("/metrics", get(scrape))
        .layer(ConcurrencyLimitLayer::new(CONNECTIONS))
}

/// Binds the endpoint and serves scrapes until the runtime stops.
pub async fn serve(endpoint: &Endpoint, engine: Engine) -> std::io::Result<()> {
    let bound = listen::bind(endpoint, None).await?;
    tracing::info!("metrics on {endpoint}/metrics");
    listen::spawn(bound, router(engine), CancellationToken::new());
    Ok(())
}
