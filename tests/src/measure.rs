//! What the reliability suite measures and records.

use serde_json::Value;

/// Records a reliability result as `$INFERD_RELIABILITY_OUT/<test>.json` when that is set
/// (`make reliability` renders them into docs/reliability.md); the process's RSS is not in it:
/// callers pass the daemon's.
pub fn record(test: &str, result: Value) {
    let Some(dir) = std::env::var_os("INFERD_RELIABILITY_OUT") else {
        return;
    };
    let slug: String = test
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let mut result = result;
    result["test"] = Value::from(test);
    std::fs::create_dir_all(&dir).expect("results dir");
    let path = std::path::Path::new(&dir).join(format!("{slug}.json"));
    std::fs::write(path, serde_json::to_string_pretty(&result).expect("json")).expect("write");
}

/// Resident memory of a process, from `/proc/<pid>/status`.
pub fn rss_of(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// `make reliability` sets `INFERD_RELIABILITY=full` for the sizes the issue names; `make test`
/// runs the same tests at `short` sizes.
pub fn full_scale() -> bool {
    std::env::var("INFERD_RELIABILITY").is_ok_and(|v| v == "full")
}

/// The p-th percentile (0–100) of `xs` (sorted here).
pub fn percentile(xs: &mut [f64], p: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(|a, b| a.total_cmp(b));
    let i = ((p / 100.0) * (xs.len() - 1) as f64).round() as usize;
    xs[i.min(xs.len() - 1)]
}
