//! Prometheus metrics. The families live in one process-wide registry, so the engine, the
//! workers and the frontends record where things happen without passing handles around;
//! gauges that mirror state (queue depth, model states, RSS) are refreshed when scraped.

mod serve;

use std::sync::OnceLock;

use inferd_client::{ModelState, ModelStatus};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub use serve::{endpoint, serve};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub model: String,
    pub op: &'static str,
    pub transport: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabel {
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MemoryLabels {
    model: String,
    /// `host` or `gpu:N`.
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    model: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DraftLabels {
    model: String,
    /// `taken` or `dropped`.
    outcome: &'static str,
}

/// A model's counters of drafted tokens (speculative decoding), kept by its worker.
pub struct Drafted {
    taken: Counter,
    dropped: Counter,
}

impl Drafted {
    pub fn record(&self, taken: usize, dropped: usize) {
        self.taken.inc_by(taken as u64);
        self.dropped.inc_by(dropped as u64);
    }
}

type Histograms = Family<ModelLabel, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    queue_depth: Family<ModelLabel, Gauge>,
    active_sequences: Family<ModelLabel, Gauge>,
    model_state: Family<StateLabels, Gauge>,
    model_memory: Family<MemoryLabels, Gauge>,
    ttft: Histograms,
    tokens_per_second: Histograms,
    batch_size: Histograms,
    draft_tokens: Family<DraftLabels, Counter>,
    load_seconds: Histograms,
    mqtt_connected: Gauge,
    rss: Gauge,
}

fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

fn rates() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 12))
}

fn sizes() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 9))
}

fn load_times() -> Histogram {
    Histogram::new(exponential_buckets(0.1, 2.0, 14))
}

/// The process-wide metrics.
pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("inferd"),
            requests: Family::default(),
            queue_depth: Family::default(),
            active_sequences: Family::default(),
            model_state: Family::default(),
            model_memory: Family::default(),
            ttft: Family::new_with_constructor(seconds),
            tokens_per_second: Family::new_with_constructor(rates),
            batch_size: Family::new_with_constructor(sizes),
            draft_tokens: Family::default(),
            load_seconds: Family::new_with_constructor(load_times),
            mqtt_connected: Gauge::default(),
            rss: Gauge::default(),
        };
        let r = &mut m.registry;
        // name, help, metric: one line each.
        macro_rules! register {
            ($($name:literal, $help:literal, $metric:expr;)*) => {
                $(r.register($name, $help, $metric.clone());)*
            };
        }
        register! {
            "requests", "Requests answered, by model, op, transport and outcome", m.requests;
            "queue_depth", "Requests waiting", m.queue_depth;
            "active_sequences", "Sequences being decoded, or requests in the run under way", m.active_sequences;
            "model_state", "1 for the state each model is in", m.model_state;
            "model_memory_bytes", "Memory a model took when it loaded, in its pool (host RSS growth, or GPU memory)", m.model_memory;
            "time_to_first_token_seconds", "From admission to the first generated token", m.ttft;
            "tokens_per_second", "Decode speed of each finished generation", m.tokens_per_second;
            "batch_size", "Rows per model run (texts, tensor rows, or sequences per decode step)", m.batch_size;
            "draft_tokens", "Tokens drafted by prompt lookup and checked in a decode step, by whether the sequence took them", m.draft_tokens;
            "model_load_seconds", "Time to load a model and open its session", m.load_seconds;
            "mqtt_connected", "1 while connected to the MQTT broker", m.mqtt_connected;
            "process_resident_memory_bytes", "Resident set size of the daemon", m.rss;
        }
        m
    }

    pub fn request(&self, labels: RequestLabels) {
        self.requests.get_or_create(&labels).inc();
    }

    pub fn generation(&self, model: &str, ttft_s: f64, tokens_per_second: f64) {
        let l = label(model);
        self.ttft.get_or_create(&l).observe(ttft_s);
        if tokens_per_second > 0.0 {
            self.tokens_per_second
                .get_or_create(&l)
                .observe(tokens_per_second);
        }
    }

    /// A model's batch-size histogram, for its worker to keep: runs and decode steps are a
    /// hot path, and a lookup per step would allocate its label each time.
    pub fn batch_sizes(&self, model: &str) -> Histogram {
        self.batch_size.get_or_create_owned(&label(model))
    }

    /// A model's draft counters, for its worker to keep (as `batch_sizes`).
    pub fn drafted(&self, model: &str) -> Drafted {
        let counter = |outcome| {
            self.draft_tokens.get_or_create_owned(&DraftLabels {
                model: model.to_owned(),
                outcome,
            })
        };
        Drafted {
            taken: counter("taken"),
            dropped: counter("dropped"),
        }
    }

    pub fn loaded(&self, model: &str, seconds: f64) {
        self.load_seconds
            .get_or_create(&label(model))
            .observe(seconds);
    }

    pub fn mqtt_connected(&self, up: bool) {
        self.mqtt_connected.set(i64::from(up));
    }

    /// Mirrors the engine's view of its models into the gauges, then encodes everything.
    pub fn render(&self, models: &[ModelStatus]) -> String {
        // One scrape at a time: each clears the per-model gauges and fills them again.
        static RENDER: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = RENDER.lock().unwrap_or_else(|p| p.into_inner());
        self.queue_depth.clear();
        self.active_sequences.clear();
        self.model_state.clear();
        self.model_memory.clear();
        for s in models {
            let l = label(&s.name);
            self.queue_depth.get_or_create(&l).set(s.queue_depth as i64);
            self.active_sequences.get_or_create(&l).set(s.active as i64);
            for state in ModelState::ALL {
                let on = i64::from(s.state == state);
                let key = StateLabels {
                    model: s.name.clone(),
                    state: state.as_str(),
                };
                self.model_state.get_or_create(&key).set(on);
            }
            if let (Some(bytes), Some(pool)) = (s.memory_bytes, &s.memory_pool) {
                let key = MemoryLabels {
                    model: s.name.clone(),
                    pool: pool.clone(),
                };
                self.model_memory.get_or_create(&key).set(bytes as i64);
            }
        }
        self.rss.set(crate::memory::rss_bytes().unwrap_or(0) as i64);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn label(model: &str) -> ModelLabel {
    ModelLabel {
        model: model.to_owned(),
    }
}
