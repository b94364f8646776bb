//! Memory pools: host RAM, and each GPU's own memory. A model's size is counted in the pool its
//! session lives in, and `engine.memory_budget` (or `engine.gpu_memory_budget` for a GPU)
//! limits each pool separately: parking a CPU model frees nothing on a GPU.

use std::fmt;

use crate::manifest::{Execution, Provider};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Pool {
    #[default]
    Host,
    /// A CUDA device ordinal, as in the manifest's `device_id`.
    Gpu(i32),
}

impl Pool {
    /// Where a session on `provider` keeps its weights.
    pub fn of(provider: Provider, exec: &Execution) -> Pool {
        match provider {
            Provider::Cpu => Pool::Host,
            Provider::Cuda => Pool::Gpu(exec.cuda.device_id),
            Provider::Tensorrt => Pool::Gpu(exec.tensorrt.device_id),
        }
    }

    /// Bytes in use now: the process's RSS, or everything in use on the device.
    pub fn used(self) -> Option<u64> {
        match self {
            Pool::Host => crate::memory::rss_bytes(),
            Pool::Gpu(d) => crate::gpu::memory_used(d).ok(),
        }
    }

    /// For people: `host RAM` or `GPU 0 memory`.
    pub fn describe(self) -> String {
        match self {
            Pool::Host => "host RAM".into(),
            Pool::Gpu(d) => format!("GPU {d} memory"),
        }
    }
}

/// `host` or `gpu:N`, as in the status and the metrics.
impl fmt::Display for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pool::Host => f.write_str("host"),
            Pool::Gpu(d) => write!(f, "gpu:{d}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Execution;

    #[test]
    fn a_session_counts_where_its_provider_keeps_it() {
        let mut exec = Execution::default();
        exec.cuda.device_id = 1;
        exec.tensorrt.device_id = 2;
        assert_eq!(Pool::of(Provider::Cpu, &exec), Pool::Host);
        assert_eq!(Pool::of(Provider::Cuda, &exec), Pool::Gpu(1));
        assert_eq!(Pool::of(Provider::Tensorrt, &exec), Pool::Gpu(2));
        assert_eq!(Pool::Gpu(1).to_string(), "gpu:1");
        assert_eq!(Pool::Host.to_string(), "host");
    }
}
