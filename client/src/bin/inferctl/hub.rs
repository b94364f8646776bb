//! The Hugging Face Hub's HTTP API, as `huggingface_hub` uses it, for `inferctl pull`:
//!
//! - a repository's files: `GET {endpoint}/api/models/{repo}/revision/{revision}` (`siblings`);
//! - a file: `GET {endpoint}/{repo}/resolve/{revision}/{file}`, which answers with the file (a
//!   small git file, its `ETag` a git hash) or redirects to a CDN (an LFS file, its sha256 in
//!   `X-Linked-Etag`, its size in `X-Linked-Size`).
//!
//! Redirects are followed here, not by the HTTP client, so the sha256 is read from the Hub's own
//! answer, and the token goes to the endpoint's host only, never to the CDN. Downloads go to
//! `NAME.incomplete` beside the destination and resume from its length with `Range` (after a
//! dropped connection, in this run or the next); an LFS file is kept only when its sha256 is the
//! Hub's.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// Attempts per file: each resumes where the last one stopped.
const ATTEMPTS: usize = 4;
const MAX_REDIRECTS: usize = 5;

pub struct Hub {
    agent: ureq::Agent,
    endpoint: String,
    token: Option<String>,
}

/// The final answer to a GET, and what the Hub said of an LFS file on the way there.
struct Answer {
    response: ureq::http::Response<ureq::Body>,
    /// `X-Linked-Etag`: the LFS file's sha256.
    linked_etag: Option<String>,
    /// `X-Linked-Size`.
    linked_size: Option<u64>,
}

/// A download's progress: bytes done of the total (0 when unknown).
pub type Progress<'p> = &'p mut dyn FnMut(u64, u64);

/// The token, from `HF_TOKEN`, else the file `HF_TOKEN_PATH` names, else huggingface_hub's own
/// (`$HF_HOME/token`, `~/.cache/huggingface/token`). Never printed.
fn token() -> Option<String> {
    if let Some(t) = std::env::var("HF_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        return Some(t.trim().to_owned());
    }
    let home = std::env::var_os("HF_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface")));
    let path = std::env::var_os("HF_TOKEN_PATH")
        .map(PathBuf::from)
        .or(home.map(|h| h.join("token")))?;
    let t = std::fs::read_to_string(path).ok()?;
    Some(t.trim().to_owned()).filter(|t| !t.is_empty())
}

/// `host[:port]` of an absolute URL.
fn host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

/// A `Location` made absolute against the URL that sent it.
fn absolute(location: &str, base: &str) -> String {
    if location.contains("://") {
        return location.to_owned();
    }
    let scheme = base.split_once("://").map_or("https", |(s, _)| s);
    if location.starts_with('/') {
        format!("{scheme}://{}{location}", host(base))
    } else {
        let dir = base.rsplit_once('/').map_or(base, |(d, _)| d);
        format!("{dir}/{location}")
    }
}

fn header<'r>(r: &'r ureq::http::Response<ureq::Body>, name: &str) -> Option<&'r str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

/// An ETag without its quotes and weak marker.
fn etag(v: &str) -> String {
    v.trim_start_matches("W/").trim_matches('"').to_owned()
}

impl Hub {
    /// The Hub at `HF_ENDPOINT` (a mirror), else huggingface.co.
    pub fn from_env() -> Hub {
        let agent = ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .timeout_recv_body(Some(Duration::from_secs(60)))
            .user_agent(concat!("inferctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let endpoint = std::env::var("HF_ENDPOINT")
            .ok()
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "https://huggingface.co".into());
        Hub {
            agent,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            token: token(),
        }
    }

    /// GET `url` (with the token when it is the endpoint's host) and `range_from`, following
    /// redirects; the final response and the `X-Linked-Etag`/`X-Linked-Size` seen on the way.
    fn get(&self, url: &str, range_from: u64) -> Result<Answer, String> {
        let (mut url, mut linked_etag, mut linked_size) = (url.to_owned(), None, None);
        for _ in 0..=MAX_REDIRECTS {
            let mut req = self.agent.get(&url);
            if let (Some(t), true) = (&self.token, host(&url) == host(&self.endpoint)) {
                req = req.header("Authorization", format!("Bearer {t}"));
            }
            if range_from > 0 {
                req = req.header("Range", format!("bytes={range_from}-"));
            }
            let r = req.call().map_err(|e| format!("{url}: {e}"))?;
            if let Some(e) = header(&r, "x-linked-etag") {
                linked_etag = Some(etag(e));
            }
            if let Some(s) = header(&r, "x-linked-size").and_then(|s| s.parse().ok()) {
                linked_size = Some(s);
            }
            if !r.status().is_redirection() {
                return Ok(Answer {
                    response: r,
                    linked_etag,
                    linked_size,
                });
            }
            let location = header(&r, "location")
                .ok_or_else(|| format!("{url}: a redirect without a Location"))?;
            url = absolute(location, &url);
        }
        Err(format!("{url}: more than {MAX_REDIRECTS} redirects"))
    }

    /// A failed answer as the user should read it.
    fn refused(&self, what: &str, status: u16) -> String {
        match status {
            401 | 403 if self.token.is_none() => format!(
                "{what}: the Hub refused access ({status}); for a gated or private repository, accept its terms on the Hub and set HF_TOKEN (or HF_TOKEN_PATH, a file holding the token)"
            ),
            401 | 403 => format!("{what}: the Hub refused access ({status}) with the token given; check that it may read this repository"),
            404 => format!("{what}: not found on {} (404)", self.endpoint),
            s => format!("{what}: HTTP {s} from {}", self.endpoint),
        }
    }

    /// The repository's file names at `revision`.
    pub fn files(&self, repo: &str, revision: &str) -> Result<Vec<String>, String> {
        let url = format!("{}/api/models/{repo}/revision/{revision}", self.endpoint);
        let r = self.get(&url, 0)?.response;
        let status = r.status().as_u16();
        if status != 200 {
            return Err(self.refused(repo, status));
        }
        let body: serde_json::Value = serde_json::from_reader(r.into_body().into_reader())
            .map_err(|e| format!("{url}: not the Hub's JSON: {e}"))?;
        Ok(body["siblings"]
            .as_array()
            .map(|s| {
                s.iter()
                    .filter_map(|f| f["rfilename"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Downloads `file` of `repo` to `dest` (once there, it is whole and verified), resuming a
    /// `dest.incomplete` left by an earlier attempt.
    pub fn download(
        &self,
        repo: &str,
        revision: &str,
        file: &str,
        dest: &Path,
        progress: Progress<'_>,
    ) -> Result<(), String> {
        if dest.exists() {
            return Ok(());
        }
        let url = format!("{}/{repo}/resolve/{revision}/{file}", self.endpoint);
        let part = dest.with_file_name(format!(
            "{}.incomplete",
            dest.file_name().unwrap_or_default().to_string_lossy()
        ));
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            match self.attempt(&url, file, &part, &mut *progress) {
                Ok(true) => {
                    return std::fs::rename(&part, dest)
                        .map_err(|e| format!("{}: {e}", dest.display()))
                }
                Ok(false) => {
                    let _ = std::fs::remove_file(&part);
                    last =
                        format!("{file}: sha256 differs from the Hub's; the download was deleted");
                    return Err(last);
                }
                Err(e) => last = e,
            }
        }
        Err(format!(
            "{last} (after {ATTEMPTS} attempts; run the same command again to resume)"
        ))
    }

    /// One attempt: appends to `part` from its length; Ok(true) when it is whole and verified,
    /// Ok(false) when whole but not what the Hub said, Err to try again.
    fn attempt(
        &self,
        url: &str,
        file: &str,
        part: &Path,
        progress: Progress<'_>,
    ) -> Result<bool, String> {
        let have = std::fs::metadata(part).map_or(0, |m| m.len());
        let Answer {
            response: r,
            linked_etag: expected_sha,
            linked_size: mut total,
        } = self.get(url, have)?;
        let status = r.status().as_u16();
        let etag_header = header(&r, "etag").map(etag);
        let mut out = match status {
            206 => OpenOptions::new().append(true).open(part),
            200 => File::create(part),
            // The whole file is already here.
            416 if have > 0 && total == Some(have) => OpenOptions::new().append(true).open(part),
            s => return Err(self.refused(file, s)),
        }
        .map_err(|e| format!("{}: {e}", part.display()))?;
        let start = if status == 206 { have } else { 0 };
        if total.is_none() {
            total = header(&r, "content-length")
                .and_then(|l| l.parse::<u64>().ok())
                .map(|l| l + start);
        }
        let mut done = start;
        if status != 416 {
            let mut body = r.into_body().into_reader();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = body.read(&mut buf).map_err(|e| {
                    format!("{file}: the connection dropped after {done} bytes: {e}")
                })?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n])
                    .map_err(|e| format!("{}: {e}", part.display()))?;
                done += n as u64;
                progress(done, total.unwrap_or(0));
            }
            out.flush()
                .map_err(|e| format!("{}: {e}", part.display()))?;
        }
        if let Some(t) = total.filter(|&t| t != done && status != 416) {
            return Err(format!(
                "{file}: the connection dropped after {done} of {t} bytes"
            ));
        }
        progress(done, done);
        // An LFS file's etag is its sha256; a git file's is a git hash, checked by its size.
        let Some(want) = expected_sha
            .or(etag_header)
            .filter(|e| e.len() == 64 && e.bytes().all(|b| b.is_ascii_hexdigit()))
        else {
            return Ok(true);
        };
        Ok(sha256_of(part)? == want.to_ascii_lowercase())
    }
}

fn sha256_of(path: &Path) -> Result<String, String> {
    let mut f = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_resolve_against_the_url_that_sent_them() {
        let base = "http://127.0.0.1:8000/org/repo/resolve/main/a.gguf";
        assert_eq!(absolute("/cdn/x", base), "http://127.0.0.1:8000/cdn/x");
        assert_eq!(
            absolute("https://cdn.example/y", base),
            "https://cdn.example/y"
        );
        assert_eq!(
            absolute("b.gguf", base),
            "http://127.0.0.1:8000/org/repo/resolve/main/b.gguf"
        );
        assert_eq!(host("https://huggingface.co/api/x"), "huggingface.co");
        assert_eq!(etag("W/\"abc\""), "abc");
    }
}
