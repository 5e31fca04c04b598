//! [`TruthWriter`]: appends every machine's ground truth to `<data_dir>/truth.jsonl`.
//!
//! One writer task per shop, fed by any number of [`TruthSink`]s over a bounded channel. Lines
//! are flushed whenever the channel runs dry (so a reader sees them within moments) and on
//! close. A clean shutdown loses nothing: drop (or finish with) every sink, then await
//! [`TruthWriter::close`], which returns once every queued line is on disk. A write error is
//! logged (ERROR: data is lost) and counted; the writer goes on with the next line.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::TruthInterval;
use crate::model::{MachineId, TimeCategory, Timestamp};

/// The file name inside the data directory.
pub const TRUTH_FILE: &str = "truth.jsonl";

/// One line of `truth.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TruthLine {
    pub machine: MachineId,
    pub start: Timestamp,
    pub end: Timestamp,
    pub seconds: f64,
    pub category: TimeCategory,
    pub job: Option<String>,
    pub operation: Option<String>,
    pub part_number: Option<String>,
    pub program: Option<String>,
    pub shift: Option<String>,
    pub activity: String,
}

impl From<&TruthInterval> for TruthLine {
    fn from(i: &TruthInterval) -> Self {
        Self {
            machine: i.machine.clone(),
            start: i.start,
            end: i.end,
            seconds: i.end.micros_since(i.start) as f64 / 1e6,
            category: i.category.clone(),
            job: i.context.job.clone(),
            operation: i.context.operation.clone(),
            part_number: i.context.part_number.clone(),
            program: i.program.clone(),
            shift: i.context.shift.clone(),
            activity: i.activity.to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TruthError {
    #[error("cannot open ground-truth file {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("ground-truth writer task failed: {0}")]
    Task(String),
}

/// What the writer did, reported by [`TruthWriter::close`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TruthStats {
    pub written: u64,
    pub lost: u64,
}

/// A handle that sends truth intervals to the writer. Cheap to clone; one per machine task.
#[derive(Clone, Debug)]
pub struct TruthSink {
    tx: mpsc::Sender<TruthInterval>,
}

impl TruthSink {
    /// Queues intervals for writing; waits when the queue is full. Returns false when the
    /// writer is gone.
    pub async fn send(&self, intervals: Vec<TruthInterval>) -> bool {
        for i in intervals {
            if self.tx.send(i).await.is_err() {
                return false;
            }
        }
        true
    }

    /// A sink not connected to any file, plus the receiving end (for tests and for callers
    /// that route truth elsewhere).
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<TruthInterval>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { tx }, rx)
    }
}

/// The writer task's handle.
#[derive(Debug)]
pub struct TruthWriter {
    path: PathBuf,
    task: JoinHandle<TruthStats>,
}

impl TruthWriter {
    /// Creates `data_dir` if needed, opens `<data_dir>/truth.jsonl` for appending, and starts
    /// the writer task. Call inside a tokio runtime.
    pub async fn open(data_dir: &Path) -> Result<(TruthWriter, TruthSink), TruthError> {
        let path = data_dir.join(TRUTH_FILE);
        let open_err = |source| TruthError::Open {
            path: path.clone(),
            source,
        };
        tokio::fs::create_dir_all(data_dir)
            .await
            .map_err(open_err)?;
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await
            .map_err(open_err)?;
        let (sink, rx) = TruthSink::channel(4096);
        let task = tokio::spawn(write_loop(path.clone(), file, rx));
        Ok((TruthWriter { path, task }, sink))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits until every sink is dropped and every queued line is written and flushed.
    pub async fn close(self) -> Result<TruthStats, TruthError> {
        self.task.await.map_err(|e| TruthError::Task(e.to_string()))
    }
}

async fn write_loop(
    path: PathBuf,
    file: tokio::fs::File,
    mut rx: mpsc::Receiver<TruthInterval>,
) -> TruthStats {
    let mut out = tokio::io::BufWriter::new(file);
    let mut stats = TruthStats::default();
    let mut buf = Vec::with_capacity(256);
    let mut dirty = false;
    loop {
        let next = if dirty {
            match rx.try_recv() {
                Ok(i) => Some(i),
                Err(mpsc::error::TryRecvError::Empty) => {
                    flush(&path, &mut out, &mut stats).await;
                    dirty = false;
                    rx.recv().await
                }
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            }
        } else {
            rx.recv().await
        };
        let Some(interval) = next else { break };
        buf.clear();
        if let Err(e) = serde_json::to_writer(&mut buf, &TruthLine::from(&interval)) {
            stats.lost += 1;
            tracing::error!(path = %path.display(), error = %e, "cannot serialize a truth line");
            continue;
        }
        buf.push(b'\n');
        match out.write_all(&buf).await {
            Ok(()) => {
                stats.written += 1;
                dirty = true;
            }
            Err(e) => {
                stats.lost += 1;
                if stats.lost == 1 || stats.lost.is_power_of_two() {
                    tracing::error!(path = %path.display(), error = %e, lost = stats.lost,
                        "cannot write ground truth");
                }
            }
        }
    }
    flush(&path, &mut out, &mut stats).await;
    if let Err(e) = out.get_ref().sync_data().await {
        tracing::warn!(path = %path.display(), error = %e, "cannot sync ground truth");
    }
    stats
}

async fn flush(
    path: &Path,
    out: &mut tokio::io::BufWriter<tokio::fs::File>,
    stats: &mut TruthStats,
) {
    if let Err(e) = out.flush().await {
        tracing::error!(path = %path.display(), error = %e, written = stats.written,
            "cannot flush ground truth");
    }
}
