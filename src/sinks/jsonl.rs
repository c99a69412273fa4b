//! JSON lines: one [`Event`] per line (schema [`crate::events::EVENT_SCHEMA`]) to stdout or a
//! file (appended to; created if missing). Each line is written and flushed as it comes, so
//! `tail -f` and pipes see events at once.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::{Sink, SinkError, SinkState, SinkStats};
use crate::events::Event;

/// Where the lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonlTarget {
    /// Standard output.
    Stdout,
    /// A file, appended to (a FIFO works too).
    File(PathBuf),
}

/// The JSON-lines sink.
pub struct JsonlSink {
    target: JsonlTarget,
    out: Option<Box<dyn Write + Send>>,
    line: String,
}

impl JsonlSink {
    /// A sink writing to `target` (opened on the sink's own thread by [`Sink::start`]).
    pub fn new(target: JsonlTarget) -> Self {
        Self {
            target,
            out: None,
            line: String::with_capacity(1024),
        }
    }
}

impl Sink for JsonlSink {
    fn name(&self) -> String {
        match &self.target {
            JsonlTarget::Stdout => "jsonl:stdout".into(),
            JsonlTarget::File(p) => format!("jsonl:{}", p.display()),
        }
    }

    fn start(&mut self, stats: Arc<SinkStats>) -> Result<(), SinkError> {
        let out: Box<dyn Write + Send> = match &self.target {
            JsonlTarget::Stdout => Box::new(io::stdout()),
            JsonlTarget::File(p) => Box::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|source| SinkError::Io {
                        what: format!("opening {} for JSON lines", p.display()),
                        source,
                    })?,
            ),
        };
        self.out = Some(out);
        stats.set_state(SinkState::Up);
        Ok(())
    }

    fn deliver(&mut self, event: &Event, stats: &SinkStats) {
        let Some(out) = self.out.as_mut() else {
            SinkStats::add(&stats.failed, 1);
            return;
        };
        self.line.clear();
        self.line.push_str(&event.to_json());
        self.line.push('\n');
        match out
            .write_all(self.line.as_bytes())
            .and_then(|_| out.flush())
        {
            Ok(()) => {
                SinkStats::add(&stats.delivered, 1);
                stats.set_state(SinkState::Up);
            }
            Err(e) => {
                if stats.state() != SinkState::Down {
                    tracing::warn!(sink = %self.name(), error = %e, "writing an event failed");
                }
                stats.set_state(SinkState::Down);
                SinkStats::add(&stats.failed, 1);
            }
        }
    }

    fn close(&mut self, _deadline: Instant, _stats: &SinkStats) {
        if let Some(out) = self.out.as_mut() {
            let _ = out.flush();
        }
    }
}
