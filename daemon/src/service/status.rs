//! The one-line `STATUS=` that `systemctl status` shows, e.g.
//! `serving 3 models (2 on CUDA) · D-Bus system · MQTT connected`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use inferd_client::{ModelState, ModelStatus};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::Notifier;
use crate::engine::Engine;

/// What the status says besides the models: set by reload and the watchdog.
#[derive(Clone, Default)]
pub struct Notes {
    inner: Arc<Mutex<NotesInner>>,
    changed: Arc<Notify>,
}

#[derive(Default)]
struct NotesInner {
    reload_error: Option<String>,
    wedged: Vec<(String, Duration)>,
}

impl Notes {
    fn lock(&self) -> MutexGuard<'_, NotesInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_reload_error(&self, error: Option<String>) {
        self.lock().reload_error = error;
        self.changed.notify_one();
    }

    /// Workers whose health probe is overdue; logs when the set starts or stops being empty.
    pub fn set_wedged(&self, wedged: Vec<(String, Duration)>) {
        let mut inner = self.lock();
        match (inner.wedged.is_empty(), wedged.is_empty()) {
            (true, false) => {
                for (model, age) in &wedged {
                    tracing::error!(
                        model = %model,
                        waited_ms = age.as_millis() as u64,
                        "the model's worker does not answer its health probe; \
                         stopping watchdog pings"
                    );
                }
            }
            (false, true) => tracing::info!("every worker answers again; watchdog pings resume"),
            _ => {}
        }
        let changed = inner.wedged.len() != wedged.len();
        inner.wedged = wedged;
        drop(inner);
        if changed {
            self.changed.notify_one();
        }
    }
}

/// Renders and publishes the status whenever something in it may have changed.
#[derive(Clone)]
pub struct StatusLine {
    pub engine: Engine,
    /// `system`, `session` or the bus address.
    pub bus: String,
    /// Absent when MQTT is off.
    pub mqtt: Option<watch::Receiver<bool>>,
    pub notes: Notes,
}

impl StatusLine {
    pub fn render(&self) -> String {
        let notes = self.notes.lock();
        render(
            &self.engine.list(),
            &self.bus,
            self.mqtt.as_ref().map(|m| *m.borrow()),
            &notes.wedged,
            notes.reload_error.as_deref(),
        )
    }

    /// Publishes changes until the engine goes away. Elapsed times (engine builds, wedged
    /// workers) refresh every few seconds.
    pub fn spawn(mut self, notifier: Notifier) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut changes = self.engine.subscribe();
            let mut last = String::new();
            loop {
                let line = self.render();
                if line != last {
                    notifier.status(&line);
                    tracing::debug!(status = %line, "service status");
                    last = line;
                }
                let mqtt = async {
                    match self.mqtt.as_mut() {
                        Some(m) => m.changed().await.is_ok(),
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    r = changes.recv() => if matches!(r, Err(tokio::sync::broadcast::error::RecvError::Closed)) { return },
                    ok = mqtt => if !ok { self.mqtt = None },
                    _ = self.notes.changed.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        })
    }
}

fn provider_label(p: &str) -> &str {
    match p {
        "cuda" => "CUDA",
        "tensorrt" => "TensorRT",
        "cpu" => "CPU",
        other => other,
    }
}

fn render(
    models: &[ModelStatus],
    bus: &str,
    mqtt: Option<bool>,
    wedged: &[(String, Duration)],
    reload_error: Option<&str>,
) -> String {
    let count = |s: ModelState| models.iter().filter(|m| m.state == s).count();
    let ready = count(ModelState::Ready);
    let plural = if models.len() == 1 { "" } else { "s" };
    let mut serving = if ready == models.len() {
        format!("serving {ready} model{plural}")
    } else {
        format!("serving {ready} of {} model{plural}", models.len())
    };
    let mut on_gpu: Vec<(&str, usize)> = Vec::new();
    for m in models.iter().filter(|m| m.state == ModelState::Ready) {
        if m.provider == "cpu" || m.provider.is_empty() {
            continue;
        }
        match on_gpu.iter_mut().find(|(p, _)| *p == m.provider) {
            Some((_, n)) => *n += 1,
            None => on_gpu.push((&m.provider, 1)),
        }
    }
    if !on_gpu.is_empty() {
        let list: Vec<String> = on_gpu
            .iter()
            .map(|(p, n)| format!("{n} on {}", provider_label(p)))
            .collect();
        serving += &format!(" ({})", list.join(", "));
    }
    let mut parts = vec![serving];
    let loading = count(ModelState::Loading);
    if loading > 0 {
        parts.push(format!("{loading} loading"));
    }
    let failed: Vec<&str> = models
        .iter()
        .filter(|m| m.state == ModelState::Failed)
        .map(|m| m.name.as_str())
        .collect();
    if !failed.is_empty() {
        parts.push(format!("{} failed ({})", failed.len(), failed.join(", ")));
    }
    for m in models {
        if let Some(s) = m.engine_build_s {
            parts.push(format!(
                "{}: building TensorRT engine {}",
                m.name,
                inferd_client::status::elapsed(s)
            ));
        }
    }
    parts.push(format!("D-Bus {bus}"));
    match mqtt {
        Some(true) => parts.push("MQTT connected".into()),
        Some(false) => parts.push("MQTT disconnected".into()),
        None => {}
    }
    for (model, age) in wedged {
        parts.push(format!(
            "worker of {model} not answering for {}s",
            age.as_secs()
        ));
    }
    if let Some(e) = reload_error {
        parts.push(format!("reload failed, previous config kept: {e}"));
    }
    parts.join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str, state: ModelState, provider: &str) -> ModelStatus {
        ModelStatus {
            name: name.into(),
            kind: "embedding".into(),
            state,
            provider: provider.into(),
            ..Default::default()
        }
    }

    #[test]
    fn says_what_serves_where() {
        let models = [
            model("a", ModelState::Ready, "cuda"),
            model("b", ModelState::Ready, "cuda"),
            model("c", ModelState::Ready, "cpu"),
        ];
        assert_eq!(
            render(&models, "system", Some(true), &[], None),
            "serving 3 models (2 on CUDA) · D-Bus system · MQTT connected"
        );
    }

    #[test]
    fn says_what_is_wrong() {
        let mut building = model("llm", ModelState::Ready, "cuda");
        building.engine_build_s = Some(130);
        let models = [
            building,
            model("x", ModelState::Failed, ""),
            model("y", ModelState::Loading, ""),
        ];
        let line = render(
            &models,
            "session",
            Some(false),
            &[("llm".into(), Duration::from_secs(20))],
            Some("bad key"),
        );
        assert_eq!(
            line,
            "serving 1 of 3 models (1 on CUDA) · 1 loading · 1 failed (x) · \
             llm: building TensorRT engine 2m10s · D-Bus session · MQTT disconnected · \
             worker of llm not answering for 20s · reload failed, previous config kept: bad key"
        );
    }
}
