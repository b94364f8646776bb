//! The native importer's progress as the Python importer shows it: on a terminal a bar per stage,
//! redrawn in place; otherwise one line per finished stage, so logs still show where time went.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use inferd_import::progress::Step;

const WIDTH: usize = 30;

pub struct Bars {
    tty: bool,
    stage: String,
    started: Instant,
}

impl Bars {
    pub fn new() -> Self {
        Bars {
            tty: std::io::stderr().is_terminal(),
            stage: String::new(),
            started: Instant::now(),
        }
    }

    pub fn show(&mut self, s: Step<'_>) {
        if s.stage != self.stage {
            self.stage = s.stage.to_owned();
            self.started = Instant::now();
        }
        let done = s.done >= s.total;
        let secs = self.started.elapsed().as_secs_f64();
        let mut err = std::io::stderr().lock();
        if self.tty {
            let filled = WIDTH * s.done.min(s.total) / s.total.max(1);
            let _ = write!(
                err,
                "\r{:<9}[{}{}] {}/{} {secs:.1} s",
                s.stage,
                "#".repeat(filled),
                " ".repeat(WIDTH - filled),
                s.done,
                s.total
            );
            if done {
                let _ = writeln!(err);
            }
        } else if done {
            let _ = writeln!(err, "{}: {}/{} in {secs:.1} s", s.stage, s.done, s.total);
        }
    }
}
