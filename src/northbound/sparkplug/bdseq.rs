//! The birth/death sequence number, kept in the data directory so that it advances across
//! restarts (tck-id-payloads-nbirth-bdseq-increment: a new value on every MQTT CONNECT, the
//! same in that connection's Will and NBIRTH; 0..=255, wrapping).

use std::io::Write;
use std::path::{Path, PathBuf};

/// The file, beside the journal.
pub const FILE: &str = "sparkplug-bdseq";

/// Reads and advances the bdSeq stored in a directory.
#[derive(Debug)]
pub struct BdSeqStore {
    path: PathBuf,
}

impl BdSeqStore {
    pub fn new(dir: &Path) -> Self {
        Self {
            path: dir.join(FILE),
        }
    }

    /// The bdSeq for the next CONNECT: one more than the last one used (0 the first time),
    /// written durably (write, fsync, rename) before it is returned, so that a crash right
    /// after a CONNECT never reuses it. An unreadable file starts again at 0 and says so.
    pub fn next(&self) -> std::io::Result<u64> {
        let last = match std::fs::read_to_string(&self.path) {
            Ok(s) => match s.trim().parse::<u64>() {
                Ok(v) => Some(v),
                Err(_) => {
                    tracing::warn!(path = %self.path.display(), found = %s.trim(), "the stored Sparkplug bdSeq is not a number; starting again at 0");
                    None
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let next = last.map(|v| (v + 1) % 256).unwrap_or(0);
        let tmp = self.path.with_extension("tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            writeln!(f, "{next}")?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bdseq_advances_across_restarts_and_wraps_at_256() {
        let dir = tempfile::tempdir().unwrap();
        let s = BdSeqStore::new(dir.path());
        assert_eq!(s.next().unwrap(), 0);
        assert_eq!(s.next().unwrap(), 1);
        // A new process reads what the last one wrote.
        assert_eq!(BdSeqStore::new(dir.path()).next().unwrap(), 2);
        std::fs::write(dir.path().join(FILE), "255\n").unwrap();
        assert_eq!(s.next().unwrap(), 0);
        std::fs::write(dir.path().join(FILE), "garbage").unwrap();
        assert_eq!(s.next().unwrap(), 0);
    }
}
