//! What the process holds in memory, measured rather than guessed from file sizes.

/// Resident set size from `/proc/self/status` (`VmRSS`, in kB).
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_vm_rss() {
        let status = "Name:\tinferd\nVmRSS:\t  123456 kB\nThreads:\t4\n";
        assert_eq!(super::parse_vm_rss(status), Some(123456 * 1024));
        assert!(super::rss_bytes().is_some_and(|b| b > 1 << 20));
    }
}
