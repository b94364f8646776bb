//! The scrape endpoint: just enough HTTP/1.1 for `GET /metrics`, on a loopback TCP port or a
//! unix socket. Anything else gets a 404 or 405; each connection answers one request.

use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener};

use crate::engine::Engine;

#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Endpoint {
    /// `127.0.0.1:9464`, `[::1]:9464` or `unix:/run/inferd/metrics.sock`. Only loopback
    /// addresses: the metrics name models and load, which is not for the network.
    pub fn parse(s: &str) -> Result<Endpoint, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(format!("metrics.listen: {s:?} needs an absolute path"));
            }
            return Ok(Endpoint::Unix(path));
        }
        let addr: SocketAddr = s
            .parse()
            .map_err(|_| format!("metrics.listen: {s:?} is neither HOST:PORT nor unix:/PATH"))?;
        if !addr.ip().is_loopback() {
            return Err(format!(
                "metrics.listen: {s:?} is not a loopback address; use 127.0.0.1 or ::1 (or a unix socket)"
            ));
        }
        Ok(Endpoint::Tcp(addr))
    }
}

/// Binds the endpoint and serves scrapes until the runtime stops.
pub async fn serve(endpoint: &Endpoint, engine: Engine) -> std::io::Result<()> {
    match endpoint {
        Endpoint::Tcp(addr) => {
            let listener = TcpListener::bind(addr).await?;
            tracing::info!(%addr, "metrics on http://{addr}/metrics");
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(answer(stream, engine.clone()));
                }
            });
        }
        Endpoint::Unix(path) => {
            // A socket left by an earlier run would make bind fail.
            let _ = std::fs::remove_file(path);
            let listener = UnixListener::bind(path)?;
            tracing::info!(path = %path.display(), "metrics on a unix socket");
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(answer(stream, engine.clone()));
                }
            });
        }
    }
    Ok(())
}

async fn answer(stream: impl AsyncRead + AsyncWrite + Unpin, engine: Engine) {
    let mut stream = BufReader::new(stream);
    let mut request = String::new();
    // Headers up to the blank line; a client sending more than 8 KiB of them is cut off.
    let mut line = String::new();
    loop {
        line.clear();
        match stream.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" || line == "\n" => break,
            Ok(_) if request.len() + line.len() > 8192 => return,
            Ok(_) => request.push_str(&line),
        }
    }
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
    let stream = stream.get_mut();
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
