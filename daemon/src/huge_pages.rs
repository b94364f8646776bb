//! Backs a model's weights with transparent huge pages.
//!
//! Decoding on a CPU reads every weight once per step, so it is bound by memory, and with 4 KiB
//! pages a good part of that time goes to TLB misses. ONNX Runtime keeps its weights (prepacked
//! for its kernels) in memory from malloc, which on Linux gets huge pages only where it was
//! advised to (`transparent_hugepage/enabled` is `madvise` on most distributions), and glibc
//! advises nothing unless its `glibc.malloc.hugetlb` tunable is set at process start; even
//! then, a model loaded on a worker thread lands in that thread's malloc arena, which the
//! tunable leaves alone. So after a load, inferd advises huge pages on the anonymous memory
//! that holds it and collapses it into huge pages at once (`MADV_COLLAPSE`, Linux 6.1); on an
//! older kernel, khugepaged collapses it over the next minutes. The contents never change, so
//! neither do the model's results.

use std::io;

const HUGE: usize = 2 << 20;
/// A mapping with less than this resident is no model's weights (thread stacks, small
/// arenas): collapsing it would only add memory.
const MIN_RESIDENT: usize = 4 << 20;
const SYSFS: &str = "/sys/kernel/mm/transparent_hugepage/enabled";

/// What advising did: the bytes collapsed into huge pages now (0 where the kernel collapses
/// them later), and the process's huge-page memory after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advised {
    /// The administrator turned transparent huge pages off (`never`), or the kernel has none.
    Unavailable,
    Done {
        collapsed: u64,
        process_huge: u64,
    },
}

/// Advises and collapses every anonymous, private, writable mapping of the process with at
/// least `MIN_RESIDENT` resident: after a load, that is where its weights are. Mappings already
/// in huge pages cost only the call.
pub fn back_loaded_memory() -> io::Result<Advised> {
    match std::fs::read_to_string(SYSFS) {
        Ok(mode) if !mode.contains("[never]") => {}
        _ => return Ok(Advised::Unavailable),
    }
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut collapsed = 0;
    let mut can_collapse = true;
    for (start, end) in candidates(&smaps) {
        // SAFETY: advice changes how the range is backed, never its contents; a range another
        // thread unmapped meanwhile fails the call, which is ignored.
        unsafe {
            libc::madvise(start as *mut _, end - start, libc::MADV_HUGEPAGE);
        }
        let Some((s, e)) = aligned(start, end) else {
            continue;
        };
        if !can_collapse {
            continue;
        }
        // SAFETY: as above; the range lies inside the mapping.
        let rc = unsafe { libc::madvise(s as *mut _, e - s, libc::MADV_COLLAPSE) };
        if rc == 0 {
            collapsed += (e - s) as u64;
        } else if io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
            can_collapse = false; // before Linux 6.1: khugepaged does it
        }
    }
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup")?;
    Ok(Advised::Done {
        collapsed,
        process_huge: anon_huge_bytes(&rollup).unwrap_or(0),
    })
}

/// `[start, end)` of each mapping worth huge pages, from `/proc/<pid>/smaps`.
fn candidates(smaps: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        if let Some(range) = mapping(line) {
            current = range;
        } else if let (Some(r), Some(rss)) = (current, line.strip_prefix("Rss:")) {
            if kb(rss).is_some_and(|b| b >= MIN_RESIDENT as u64) {
                out.push(r);
            }
        }
    }
    out
}

/// A mapping's header line: `Some(Some(range))` for an anonymous private writable one (the
/// heap included), `Some(None)` for any other, `None` for a field line.
fn mapping(line: &str) -> Option<Option<(usize, usize)>> {
    let mut f = line.split_whitespace();
    let (range, perms) = (f.next()?, f.next()?);
    let (start, end) = range.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let (_offset, _dev, inode) = (f.next()?, f.next()?, f.next()?);
    let path = f.next().unwrap_or("");
    let anonymous = inode == "0" && (path.is_empty() || path == "[heap]");
    Some((anonymous && perms == "rw-p").then_some((start, end)))
}

/// The whole huge pages inside `[start, end)`.
fn aligned(start: usize, end: usize) -> Option<(usize, usize)> {
    let s = start.next_multiple_of(HUGE);
    let e = end / HUGE * HUGE;
    (s < e).then_some((s, e))
}

fn kb(field: &str) -> Option<u64> {
    let n: u64 = field.split_whitespace().next()?.parse().ok()?;
    Some(n * 1024)
}

fn anon_huge_bytes(rollup: &str) -> Option<u64> {
    rollup
        .lines()
        .find_map(|l| l.strip_prefix("AnonHugePages:"))
        .and_then(kb)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0000000-55d0c2000000 rw-p 00000000 00:00 0                          [heap]
Size:              32768 kB
Rss:               30000 kB
7f9358000000-7f935bff5000 rw-p 00000000 00:00 0 
Size:              65492 kB
Rss:               65488 kB
AnonHugePages:         0 kB
7f935bff5000-7f935c000000 ---p 00000000 00:00 0 
Size:                 44 kB
Rss:                   0 kB
7f9360000000-7f9360801000 rw-p 00000000 00:00 0 
Size:               8196 kB
Rss:                  40 kB
7f93562d5000-7f9357895000 r-xp 00210000 08:01 1234567                    /opt/libonnxruntime.so
Size:              22272 kB
Rss:               15804 kB
7f9370000000-7f9372000000 rw-p 00000000 08:01 42                         /data/model.onnx.data
Size:              32768 kB
Rss:               32768 kB
7ffd00000000-7ffd00800000 rw-p 00000000 00:00 0                          [stack]
Size:               8192 kB
Rss:                8192 kB
";

    /// The heap and a filled arena qualify; a thread stack (little resident), a guard, code,
    /// a file mapping and the main stack do not.
    #[test]
    fn picks_filled_anonymous_writable_mappings() {
        assert_eq!(
            candidates(SMAPS),
            vec![
                (0x55d0c0000000, 0x55d0c2000000),
                (0x7f9358000000, 0x7f935bff5000)
            ]
        );
    }

    #[test]
    fn collapses_only_whole_huge_pages() {
        assert_eq!(
            aligned(0x7f9358000000, 0x7f935bff5000),
            Some((0x7f9358000000, 0x7f935be00000))
        );
        assert_eq!(aligned(0x1000, 0x1ff000), None);
    }

    #[test]
    fn reads_the_process_huge_pages() {
        let rollup = "Rss:  228280 kB\nAnonHugePages:    174080 kB\n";
        assert_eq!(anon_huge_bytes(rollup), Some(174080 * 1024));
    }

    /// On this machine: a filled 16 MiB buffer is collapsed into huge pages, unchanged, where
    /// the kernel has them and can collapse (Linux 6.1); advising never fails elsewhere.
    #[test]
    fn a_filled_buffer_is_collapsed_unchanged() {
        let held = vec![1u8; 16 << 20];
        let advised = back_loaded_memory().unwrap();
        let available = std::fs::read_to_string(SYSFS).is_ok_and(|m| !m.contains("[never]"));
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut v = release
            .split(['.', '-'])
            .map(|n| n.parse::<u32>().unwrap_or(0));
        let collapses = (v.next().unwrap(), v.next().unwrap()) >= (6, 1);
        match advised {
            Advised::Done {
                collapsed,
                process_huge,
            } if available && collapses => {
                assert!(collapsed >= 12 << 20, "{advised:?}");
                assert!(process_huge >= 12 << 20, "{advised:?}");
            }
            Advised::Done { .. } => assert!(available, "{advised:?}"),
            Advised::Unavailable => assert!(!available),
        }
        assert!(held.iter().all(|&b| b == 1));
    }
}
