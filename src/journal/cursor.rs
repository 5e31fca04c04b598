use tokio_util::sync::CancellationToken;

use super::store::{Journal, JournalError};
use crate::model::{Record, Timestamp};

/// Where a new cursor starts. An existing cursor always resumes after its last ack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest record still stored.
    Beginning,
    /// Only records appended from now on.
    End,
    /// The record with this sequence number (or the oldest stored, if it is gone).
    Sequence(u64),
    /// The first record whose time is at or after this (aligned time; an interval's end).
    Time(Timestamp),
}

/// What one `next_batch` returns.
#[derive(Debug, Default)]
pub struct Batch {
    pub records: Vec<Record>,
    /// Records this cursor never saw because the hard size cap removed them before it read them.
    pub lost: u64,
}

/// A named, durable reading position in the journal.
///
/// `next_batch` reads forward from the last record it returned; `ack(upto)` makes the position
/// durable. A consumer acknowledges only what its peer acknowledged (an MQTT PUBACK, a client's
/// read), never what it merely sent: after a restart it resumes after the last ack, so records
/// in flight at a crash are delivered again (at-least-once), never lost.
pub struct Cursor {
    journal: Journal,
    name: String,
    /// The last seq returned by `next_batch` (or the ack position after a rewind).
    position: u64,
    acked: u64,
}

impl Cursor {
    pub(crate) fn new(journal: Journal, name: String, acked: u64) -> Self {
        Self {
            journal,
            name,
            position: acked,
            acked,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The last acknowledged sequence number.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// The last sequence number handed out by `next_batch`.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Up to `max` records after the last one returned (may be empty).
    pub fn next_batch(&mut self, max: usize) -> Result<Batch, JournalError> {
        let records = self.journal.read(self.position, max)?;
        let mut lost = 0;
        if let Some(first) = records.first() {
            lost = first.seq.saturating_sub(self.position + 1);
        } else {
            let first = self.journal.first_seq();
            if first > self.position + 1 {
                lost = first - self.position - 1;
                self.position = first - 1;
            }
        }
        if let Some(last) = records.last() {
            self.position = last.seq;
        }
        Ok(Batch { records, lost })
    }

    /// Waits until a record after the current position is durable, or `shutdown` fires.
    /// Returns false on shutdown (or when the journal closed).
    pub async fn wait(&self, shutdown: &CancellationToken) -> bool {
        let mut rx = self.journal.subscribe();
        loop {
            if *rx.borrow_and_update() > self.position {
                return true;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                r = rx.changed() => if r.is_err() { return false },
            }
        }
    }

    /// Durably records that everything up to `upto` was delivered.
    pub async fn ack(&mut self, upto: u64) -> Result<(), JournalError> {
        if upto <= self.acked {
            return Ok(());
        }
        self.journal.ack(&self.name, upto).await?;
        self.acked = upto.min(self.journal.last_seq()).max(self.acked);
        Ok(())
    }

    /// Records that everything up to `upto` was delivered, without waiting for a commit: the
    /// position counts at once (for [`Cursor::rewind`]), and it becomes durable with the
    /// journal's next commit (see [`crate::journal::Journal::ack_soon`]). For a consumer that
    /// acknowledges often and can deliver a few records twice after a crash.
    pub fn ack_soon(&mut self, upto: u64) {
        if upto <= self.acked {
            return;
        }
        self.journal.ack_soon(&self.name, upto);
        self.acked = upto.min(self.journal.last_seq()).max(self.acked);
    }

    /// Goes back to the last acknowledged position (after a delivery failure).
    pub fn rewind(&mut self) {
        self.position = self.acked;
    }
}
