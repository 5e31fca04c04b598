//! The journal: the durable, ordered, sequenced record log every consumer reads (DESIGN §1).
//!
//! # Invariants (tested in `tests` below and in `tests/journal_crash.rs`)
//!
//! 1. **Durable before visible.** [`Journal::append`] resolves only after the records are
//!    committed with `Durability::Immediate`; readers and cursors never see a record that a crash
//!    could take back.
//! 2. **Gap-free global sequence.** Every stored record has a sequence number one greater than
//!    the record stored before it. A commit that fails hands out no numbers: the next append
//!    reuses them, and since nobody ever saw them, no sequence number is ever reused.
//! 3. **Per-machine order.** Records are stored in the order they were appended; a producer that
//!    appends a machine's records in order finds them in that order.
//! 4. **Group commit.** One writer thread takes every append that is waiting, up to
//!    `batch_max_records`, and commits them in one transaction (one fsync), so throughput does
//!    not hinge on one fsync per record. At low rates, a commit's records extend the block the
//!    writer wrote last (up to 4 KiB encoded) instead of starting a block each; a block's
//!    records never change, only more are added behind them.
//! 5. **Cursors only lose what they acknowledged.** Retention by age and size removes only
//!    blocks whose every record every cursor has acknowledged. Only the hard size cap may remove
//!    unacknowledged records; then the oldest blocks go, the loss is counted
//!    (`shopbridge_journal_dropped_records_total`) and one ERROR is logged per episode, and a
//!    cursor that reads past the hole is told how many records it lost.
//!
//! The writer also keeps the newest 1,024 committed records decoded in memory: consumers that
//! follow the journal's end read them from there rather than decoding the tail block again
//! for every commit. They are put there after their commit and before readers are told, and
//! leave with retention, so a read answers the same either way.
//!
//! # Storage layout (redb)
//!
//! - `blocks`: first seq → an encoded block of records ([`codec`], versioned);
//! - `block_meta`: first seq → (last seq, min time, max time, bytes) for retention and time seeks;
//! - `machines`, `signals`: dictionary id → machine / signal id, written in the same transaction
//!   as the first block that uses them;
//! - `cursors`: name → last acknowledged seq;
//! - `meta`: `next_seq` (written by retention, so that it survives an emptied journal; otherwise
//!   the last block says it), `dropped_total`, `format`.

pub mod codec;
mod cursor;
mod store;

pub use cursor::{Batch, Cursor, StartAt};
pub use store::{
    AppendTicket, COMMIT_BUCKETS_MS, Journal, JournalError, JournalOptions, JournalStats,
    ReadOnlyJournal,
};

/// Every stored record, oldest first, read through `read(after, max)` page by page (a
/// re-derivation reads the whole journal without holding it in memory). An error ends the
/// iteration with that error.
pub fn all_records(
    read: impl Fn(u64, usize) -> Result<Vec<crate::model::Record>, JournalError>,
) -> impl Iterator<Item = Result<crate::model::Record, JournalError>> {
    let mut after = 0;
    let mut page: std::vec::IntoIter<crate::model::Record> = Vec::new().into_iter();
    let mut done = false;
    std::iter::from_fn(move || {
        loop {
            if let Some(r) = page.next() {
                after = r.seq;
                return Some(Ok(r));
            }
            if done {
                return None;
            }
            match read(after, 20_000) {
                Ok(p) if p.is_empty() => {
                    done = true;
                    return None;
                }
                Ok(p) => page = p.into_iter(),
                Err(e) => {
                    done = true;
                    return Some(Err(e));
                }
            }
        }
    })
}

/// The records with these seqs, in the order given, read through `read(after, max)`; a seq no
/// longer stored (removed by retention) is skipped.
pub fn read_seqs(
    read: impl Fn(u64, usize) -> Result<Vec<crate::model::Record>, JournalError>,
    seqs: &[u64],
) -> Result<Vec<crate::model::Record>, JournalError> {
    let mut out = Vec::with_capacity(seqs.len());
    for &seq in seqs {
        if let Some(r) = read(seq.saturating_sub(1), 1)?.into_iter().next() {
            if r.seq == seq {
                out.push(r);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
