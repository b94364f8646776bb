//! The scrape endpoint: just enough HTTP/1.1 for `GET /metrics`, on a loopback TCP port or a
//! unix socket. Anything else gets a 404 or 405; each connection answers one request.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::engine::Engine;

#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("metrics.listen: {0:?} needs an absolute path")]
    RelativePath(String),
    #[error("metrics.listen: {0:?} is neither HOST:PORT nor unix:/PATH")]
    Unparsable(String),
    #[error(
        "metrics.listen: {0:?} is not a loopback address; use 127.0.0.1 or ::1 (or a unix socket)"
    )]
    NotLoopback(String),
}

impl Endpoint {
    /// `127.0.0.1:9464`, `[::1]:9464` or `unix:/run/inferd/metrics.sock`. Only loopback
    /// addresses: the metrics name models and load, which is not for the network.
    pub fn parse(s: &str) -> Result<Endpoint, EndpointError> {
        if let Some(path) = s.strip_prefix("unix:") {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(EndpointError::RelativePath(s.into()));
            }
            return Ok(Endpoint::Unix(path));
        }
        let addr: SocketAddr = s.parse().map_err(|_| EndpointError::Unparsable(s.into()))?;
        if !addr.ip().is_loopback() {
            return Err(EndpointError::NotLoopback(s.into()));
        }
        Ok(Endpoint::Tcp(addr))
    }
}

/// Scrapers served at once; more wait to be accepted.
const CONNECTIONS: usize = 8;
/// A scrape that has not sent its request by then is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Request line and headers together.
const MAX_HEAD: u64 = 8192;

/// Binds the endpoint and serves scrapes until the runtime stops.
pub async fn serve(endpoint: &Endpoint, engine: Engine) -> std::io::Result<()> {
    match endpoint {
        Endpoint::Tcp(addr) => {
            let listener = Arc::new(TcpListener::bind(addr).await?);
            tracing::info!(%addr, "metrics on http://{addr}/metrics");
            spawn_accepting(engine, move || {
                let l = listener.clone();
                async move { l.accept().await.map(|(s, _)| s) }
            });
        }
        Endpoint::Unix(path) => {
            // A socket left by an earlier run would make bind fail.
            let _ = std::fs::remove_file(path);
            let listener = Arc::new(UnixListener::bind(path)?);
            tracing::info!(path = %path.display(), "metrics on a unix socket");
            spawn_accepting(engine, move || {
                let l = listener.clone();
                async move { l.accept().await.map(|(s, _)| s) }
            });
        }
    }
    Ok(())
}

/// Accepts connections while fewer than `CONNECTIONS` are being answered.
fn spawn_accepting<S, F>(engine: Engine, mut accept: impl FnMut() -> F + Send + 'static)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: std::future::Future<Output = std::io::Result<S>> + Send,
{
    let slots = Arc::new(Semaphore::new(CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            match accept().await {
                Ok(stream) => drop(tokio::spawn(answer(stream, engine.clone(), permit))),
                Err(e) => {
                    // Out of file descriptors, say: wait, do not give up the endpoint.
                    tracing::warn!("metrics endpoint: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
}

/// Reads the request head (at most `MAX_HEAD` bytes, within `READ_TIMEOUT`).
async fn read_head(stream: &mut (impl AsyncRead + Unpin)) -> Option<String> {
    let mut reader = BufReader::new(stream.take(MAX_HEAD));
    let mut head = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return None,
            Ok(_) if line == "\r\n" || line == "\n" => return Some(head),
            Ok(_) => head.push_str(&line),
        }
    }
}

async fn answer(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    engine: Engine,
    _permit: OwnedSemaphorePermit,
) {
    let Ok(Some(request)) = tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await else {
        return;
    };
    let first = request.lines().next().unwrap_or_default();
    let mut parts = first.split_whitespace();
    let (status, body) = match (parts.next(), parts.next()) {
        (Some("GET"), Some("/metrics")) => ("200 OK", crate::metrics::get().render(&engine.list())),
        (Some("GET"), _) => ("404 Not Found", "try /metrics\n".to_owned()),
        _ => ("405 Method Not Allowed", "GET /metrics only\n".to_owned()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_or_a_unix_socket() {
        assert_eq!(
            Endpoint::parse("127.0.0.1:9464").unwrap(),
            Endpoint::Tcp("127.0.0.1:9464".parse().unwrap())
        );
        assert!(Endpoint::parse("[::1]:9464").is_ok());
        assert_eq!(
            Endpoint::parse("unix:/run/inferd/m.sock").unwrap(),
            Endpoint::Unix("/run/inferd/m.sock".into())
        );
        for bad in [
            "0.0.0.0:9464",
            "192.168.1.2:80",
            "unix:rel.sock",
            "localhost",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
