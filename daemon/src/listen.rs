//! Where a local HTTP endpoint listens (the metrics scrape, the OpenAI-compatible API): a unix
//! socket or a TCP address. Loopback only unless the caller's config allows more, because both
//! say what models run and the API runs them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("{key}: {value:?} needs an absolute path")]
    RelativePath { key: &'static str, value: String },
    #[error("{key}: {value:?} is neither HOST:PORT nor unix:/PATH")]
    Unparsable { key: &'static str, value: String },
    #[error("{key}: {value:?} is not a loopback address; {hint}")]
    NotLoopback {
        key: &'static str,
        value: String,
        hint: &'static str,
    },
}

/// Whether an endpoint may be reached from other machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remote {
    Allowed,
    /// No; the text says what to use instead.
    Refused(&'static str),
}

impl Endpoint {
    /// `127.0.0.1:9464`, `[::1]:9464` or `unix:/run/inferd/metrics.sock`, read for config key
    /// `key`. A non-loopback address is refused with `remote`'s hint, unless it is `None`.
    pub fn parse(key: &'static str, s: &str, remote: Remote) -> Result<Endpoint, EndpointError> {
        if let Some(path) = s.strip_prefix("unix:") {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(EndpointError::RelativePath {
                    key,
                    value: s.into(),
                });
            }
            return Ok(Endpoint::Unix(path));
        }
        let addr: SocketAddr = s.parse().map_err(|_| EndpointError::Unparsable {
            key,
            value: s.into(),
        })?;
        if let (Remote::Refused(hint), false) = (remote, addr.ip().is_loopback()) {
            return Err(EndpointError::NotLoopback {
                key,
                value: s.into(),
                hint,
            });
        }
        Ok(Endpoint::Tcp(addr))
    }

    pub fn is_loopback(&self) -> bool {
        match self {
            Endpoint::Tcp(a) => a.ip().is_loopback(),
            Endpoint::Unix(_) => true,
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(a) => write!(f, "http://{a}"),
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// An endpoint bound, ready to serve.
pub enum Bound {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// Binds `endpoint`. A unix socket's folder is made when missing; one left by an earlier run
/// is replaced (only a socket: any other file there is an error), and the new one gets `mode`
/// when given.
pub async fn bind(endpoint: &Endpoint, mode: Option<u32>) -> std::io::Result<Bound> {
    match endpoint {
        Endpoint::Tcp(addr) => Ok(Bound::Tcp(TcpListener::bind(addr).await?)),
        Endpoint::Unix(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            remove_stale_socket(path)?;
            let listener = UnixListener::bind(path)?;
            if let Some(mode) = mode {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
            }
            Ok(Bound::Unix(listener))
        }
    }
}

fn remove_stale_socket(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Who is on the other end of a connection, for handlers that take `ConnectInfo<Peer>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Tcp,
    /// A unix-socket client, with its uid from the kernel (`SO_PEERCRED`).
    Unix {
        uid: Option<u32>,
    },
}

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(_: IncomingStream<'_, TcpListener>) -> Peer {
        Peer::Tcp
    }
}

impl Connected<IncomingStream<'_, UnixListener>> for Peer {
    fn connect_info(s: IncomingStream<'_, UnixListener>) -> Peer {
        Peer::Unix {
            uid: s.io().peer_cred().ok().map(|c| c.uid()),
        }
    }
}

/// Serves `app` until `stop` is cancelled; then answers in progress finish (idle keep-alive
/// connections close at once).
pub fn spawn(bound: Bound, app: axum::Router, stop: CancellationToken) -> JoinHandle<()> {
    let app = app.into_make_service_with_connect_info::<Peer>();
    tokio::spawn(async move {
        let r = match bound {
            Bound::Tcp(l) => {
                axum::serve(l, app)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await
            }
            Bound::Unix(l) => {
                axum::serve(l, app)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await
            }
        };
        if let Err(e) = r {
            tracing::error!("HTTP server stopped: {e}");
        }
    })
}

/// Waits up to `grace` for servers stopped through their token to finish.
pub async fn join(servers: Vec<JoinHandle<()>>, grace: Duration) {
    let all = futures_util::future::join_all(servers);
    if tokio::time::timeout(grace, all).await.is_err() {
        tracing::warn!("HTTP connections still open after {grace:?}; closing them");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_unless_remote_is_allowed() {
        let (k, local) = ("metrics.listen", Remote::Refused("use 127.0.0.1"));
        assert_eq!(
            Endpoint::parse(k, "127.0.0.1:9464", local).unwrap(),
            Endpoint::Tcp("127.0.0.1:9464".parse().unwrap())
        );
        assert!(Endpoint::parse(k, "[::1]:9464", local).is_ok());
        assert_eq!(
            Endpoint::parse(k, "unix:/run/inferd/m.sock", local).unwrap(),
            Endpoint::Unix("/run/inferd/m.sock".into())
        );
        for bad in [
            "0.0.0.0:9464",
            "192.168.1.2:80",
            "localhost",
            "unix:m.sock",
            "",
        ] {
            let e = Endpoint::parse(k, bad, local).unwrap_err().to_string();
            assert!(e.starts_with("metrics.listen: "), "{e}");
        }
        let e = Endpoint::parse(k, "0.0.0.0:1", local)
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("not a loopback address; use 127.0.0.1"), "{e}");
        let wide = Endpoint::parse("http.listen", "0.0.0.0:8080", Remote::Allowed).unwrap();
        assert!(!wide.is_loopback());
    }
}
