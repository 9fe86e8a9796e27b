//! Where readings come from: the simulated sensor, standard input, or a command's output
//! (one JSON object per line, so a real gateway can feed the agent).
//!
//! The agent polls a [`Source`] only while its disk queue has room: when the queue is full
//! the source is simply not read, so a command writing readings blocks on its full pipe
//! (backpressure) instead of the agent dropping anything.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use crate::config::SourceKind;
use crate::error::{Error, Result};
use crate::frame::MAX_READING;
use crate::reading::Sensor;

/// A stream of readings (raw JSON lines; the agent checks them).
///
/// `next` must be cancel safe: the agent uses it in `tokio::select!`, and a reading the
/// future has already taken from its input must not be lost when it is dropped.
pub trait Source: Send {
    /// The next line; `Ok(None)` at the end of the input. An over-long line comes back as
    /// [`Error::InvalidReading`] (skipped by the agent); other errors end the agent.
    fn next(&mut self) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;
}

/// Milliseconds since the Unix epoch, by the wall clock.
pub fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The simulated sensor, one reading per interval.
#[derive(Debug)]
pub struct Simulated {
    sensor: Sensor,
    ticks: tokio::time::Interval,
}

impl Simulated {
    /// A sensor seeded from the operating system's random source (or the clock).
    pub fn new(interval: Duration) -> Self {
        let mut seed = [0u8; 8];
        let seed = match getrandom::fill(&mut seed) {
            Ok(()) => u64::from_le_bytes(seed),
            Err(_) => wall_ms().unsigned_abs(),
        };
        let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(1)));
        // When backpressure stops the agent from reading, the sensor is not sampled; it does
        // not catch up with a burst afterwards.
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Simulated {
            sensor: Sensor::new(seed),
            ticks,
        }
    }
}

impl Source for Simulated {
    async fn next(&mut self) -> Result<Option<Vec<u8>>> {
        // `Interval::tick` is cancel safe; after it the reading is made without awaiting.
        self.ticks.tick().await;
        Ok(Some(self.sensor.reading(wall_ms())))
    }
}

/// JSON lines from a reader (standard input or a child's standard output), with a bound on
/// the line length so that a writer that never ends its line cannot exhaust memory.
#[derive(Debug)]
pub struct Lines<R> {
    reader: BufReader<R>,
    line: Vec<u8>,
    /// Bytes of an over-long line being skipped up to its newline.
    skipping: Option<usize>,
    child: Option<Child>,
}

/// Longest line accepted.
pub const MAX_LINE: usize = MAX_READING;

impl<R: AsyncRead + Unpin + Send> Lines<R> {
    /// Lines of `reader`.
    pub fn new(reader: R) -> Self {
        Lines {
            reader: BufReader::new(reader),
            line: Vec::new(),
            skipping: None,
            child: None,
        }
    }
}

impl<R: AsyncRead + Unpin + Send> Source for Lines<R> {
    async fn next(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            // `fill_buf` consumes nothing, and all partial state lives in `self`: cancel safe.
            let available = self.reader.fill_buf().await.map_err(|e| Error::Source {
                reason: "cannot read".into(),
                source: Some(e),
            })?;
            if available.is_empty() {
                if let Some(mut child) = self.child.take() {
                    match child.wait().await {
                        Ok(status) if status.success() => {}
                        Ok(status) => tracing::warn!(%status, "reading command exited"),
                        Err(e) => tracing::warn!(error = %e, "reading command: wait failed"),
                    }
                }
                if let Some(len) = self.skipping.take() {
                    return Err(Error::InvalidReading {
                        len,
                        reason: format!("line longer than {MAX_LINE} bytes"),
                    });
                }
                if self.line.is_empty() {
                    return Ok(None);
                }
                return Ok(Some(std::mem::take(&mut self.line)));
            }
            let (chunk, newline) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (&available[..i], Some(i + 1)),
                None => (available, None),
            };
            let used = newline.unwrap_or(chunk.len());
            if let Some(len) = self.skipping.as_mut() {
                *len += chunk.len();
            } else if self.line.len() + chunk.len() > MAX_LINE {
                self.skipping = Some(self.line.len() + chunk.len());
                self.line.clear();
            } else {
                self.line.extend_from_slice(chunk);
            }
            self.reader.consume(used);
            if newline.is_some() {
                if let Some(len) = self.skipping.take() {
                    return Err(Error::InvalidReading {
                        len,
                        reason: format!("line longer than {MAX_LINE} bytes"),
                    });
                }
                if self.line.iter().all(u8::is_ascii_whitespace) {
                    self.line.clear();
                    continue; // blank lines are not readings
                }
                return Ok(Some(std::mem::take(&mut self.line)));
            }
        }
    }
}

/// The source a configuration names.
#[derive(Debug)]
pub enum Configured {
    /// `simulate`.
    Simulated(Simulated),
    /// `stdin`.
    Stdin(Lines<tokio::io::Stdin>),
    /// `command`.
    Command(Lines<tokio::process::ChildStdout>),
}

impl Configured {
    /// Opens the source (starts the command, if any). Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// [`Error::Source`] when the command cannot be started.
    pub fn open(kind: &SourceKind) -> Result<Self> {
        Ok(match kind {
            SourceKind::Simulate { interval } => Configured::Simulated(Simulated::new(*interval)),
            SourceKind::Stdin => Configured::Stdin(Lines::new(tokio::io::stdin())),
            SourceKind::Command(command) => {
                let mut child = Command::new("sh")
                    .arg("-c")
                    .arg(command)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::inherit())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| Error::Source {
                        reason: format!("cannot start `{command}`"),
                        source: Some(e),
                    })?;
                let stdout = child.stdout.take().ok_or_else(|| Error::Source {
                    reason: "the command has no standard output".into(),
                    source: None,
                })?;
                let mut lines = Lines::new(stdout);
                lines.child = Some(child);
                Configured::Command(lines)
            }
        })
    }
}

impl Source for Configured {
    async fn next(&mut self) -> Result<Option<Vec<u8>>> {
        match self {
            Configured::Simulated(s) => s.next().await,
            Configured::Stdin(s) => s.next().await,
            Configured::Command(s) => s.next().await,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn lines_skip_blank_and_overlong_and_keep_the_last_unterminated() {
        let long = "x".repeat(MAX_LINE + 10);
        let input = format!("{{\"a\":1}}\n\n  \n{long}\n{{\"b\":2}}\n{{\"c\":3}}");
        let mut lines = Lines::new(input.as_bytes());
        assert_eq!(lines.next().await.unwrap().unwrap(), b"{\"a\":1}");
        assert!(matches!(
            lines.next().await,
            Err(Error::InvalidReading { len, .. }) if len == MAX_LINE + 10
        ));
        assert_eq!(lines.next().await.unwrap().unwrap(), b"{\"b\":2}");
        assert_eq!(lines.next().await.unwrap().unwrap(), b"{\"c\":3}");
        assert!(lines.next().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn command_source_reads_its_output() {
        let mut source = Configured::open(&SourceKind::Command(
            "printf '{\"n\":1}\\n{\"n\":2}\\n'".into(),
        ))
        .unwrap();
        assert_eq!(source.next().await.unwrap().unwrap(), b"{\"n\":1}");
        assert_eq!(source.next().await.unwrap().unwrap(), b"{\"n\":2}");
        assert!(source.next().await.unwrap().is_none());
    }
}
