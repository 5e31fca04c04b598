use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot, watch};

use super::codec::{self, CodecError, Dictionary, Interner};
use super::cursor::{Cursor, StartAt};
use crate::clock::Clock;
use crate::model::{MachineId, Record, RecordKind, SignalId, Timestamp};

const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
/// first seq → (last seq, min time µs, max time µs, encoded bytes)
const BLOCK_META: TableDefinition<u64, (u64, i64, i64, u64)> = TableDefinition::new("block_meta");
const MACHINES: TableDefinition<u32, &str> = TableDefinition::new("machines");
const SIGNALS: TableDefinition<u32, &str> = TableDefinition::new("signals");
const CURSORS: TableDefinition<&str, u64> = TableDefinition::new("cursors");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Consumers' saved state (the context engine's), written with their cursor in one commit.
const STATES: TableDefinition<&str, &[u8]> = TableDefinition::new("states");

const META_NEXT_SEQ: &str = "next_seq";
const META_DROPPED: &str = "dropped_total";
const META_FORMAT: &str = "format";

/// How many of the newest committed records the journal also keeps decoded in memory.
const RECENT_RECORDS: usize = 1024;

/// redb page cache size. redb keeps every page it writes in this cache until the cache is full,
/// so the cap is reached on any long-running bridge and is part of its steady RSS; the readers
/// that follow the journal's end read the recent records instead, and the ones that read far
/// behind (a backfill, an export) go to the file through the OS page cache. 1 MiB rather than
/// 4: the bigger cache bought nothing measurable in `bench pipeline` (throughput, emit-to-durable
/// latency) or `bench sparkplug --only backlog`, and held 3 MiB more of a long-running bridge's
/// RSS (3.3 MiB at the end of the 200-machine `bench soak`).
const CACHE_BYTES: usize = 1 << 20;

/// The file inside the data directory that holds the journal.
pub const JOURNAL_FILE: &str = "journal.redb";

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(
        "the journal {path} is open in another process (a running shopbridge on the same data \
         directory holds it exclusively)"
    )]
    AlreadyOpen { path: PathBuf },
    #[error("cannot open the journal {path}: {detail}")]
    Open { path: PathBuf, detail: String },
    #[error("there is no journal at {path}")]
    Missing { path: PathBuf },
    #[error("journal storage failed while {op}: {detail}")]
    Storage { op: &'static str, detail: String },
    #[error("journal block at seq {first_seq} cannot be decoded: {source}")]
    Codec {
        first_seq: u64,
        #[source]
        source: CodecError,
    },
    #[error("a cursor name is 1-64 characters of a-z, 0-9, '-', '_', '.' and ':', found {0:?}")]
    CursorName(String),
    #[error("the journal is closed")]
    Closed,
}

fn storage(op: &'static str) -> impl Fn(redb::Error) -> JournalError {
    move |e| JournalError::Storage {
        op,
        detail: e.to_string(),
    }
}

macro_rules! st {
    ($e:expr, $op:literal) => {
        $e.map_err(|e| storage($op)(redb::Error::from(e)))
    };
}

/// Retention and batching settings.
#[derive(Clone, Debug)]
pub struct JournalOptions {
    /// Acknowledged records older than this go.
    pub max_age: Duration,
    /// Above this many encoded bytes, acknowledged records go, oldest first.
    pub max_bytes: u64,
    /// Above this, the oldest records go even if a cursor has not acknowledged them.
    pub hard_cap_bytes: u64,
    /// Most records one group commit takes.
    pub batch_max_records: usize,
    /// Records per stored block (the unit of reading and of retention).
    pub block_records: usize,
    /// How often retention runs when nothing else wakes the writer.
    pub retention_interval: Duration,
    /// The clock retention reads its "now" from.
    pub clock: Clock,
    /// Below this much free space on the journal's file system the writer holds commits (and
    /// with them the pipeline and the drivers) instead of letting the disk fill up.
    pub min_free_bytes: u64,
}

impl Default for JournalOptions {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(30 * 86_400),
            max_bytes: 2 << 30,
            hard_cap_bytes: 4 << 30,
            batch_max_records: 16_384,
            block_records: 4096,
            retention_interval: Duration::from_secs(10),
            clock: Clock::system(),
            min_free_bytes: 32 << 20,
        }
    }
}

/// Counters for `/metrics` and `/healthz`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct JournalStats {
    pub first_seq: u64,
    pub last_seq: u64,
    pub appended_total: u64,
    pub commits_total: u64,
    pub commit_errors_total: u64,
    pub bytes: u64,
    pub file_bytes: u64,
    pub dropped_total: u64,
    pub removed_total: u64,
    /// Each cursor's last acknowledged seq.
    pub cursors: BTreeMap<String, u64>,
    /// Commit durations: cumulative counts per upper bound in [`COMMIT_BUCKETS_MS`], then the
    /// sum in microseconds.
    pub commit_buckets: Vec<u64>,
    pub commit_micros_sum: u64,
    /// Records the writer holds because it cannot write them (the disk is full, or the file
    /// system failed a write): non-zero means the journal, and with it collection, is paused.
    pub held_records: u64,
}

/// Upper bounds (milliseconds) of the commit-duration histogram.
pub const COMMIT_BUCKETS_MS: [f64; 10] =
    [0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0];

#[derive(Default)]
struct Counters {
    first_seq: AtomicU64,
    appended_total: AtomicU64,
    commits_total: AtomicU64,
    commit_errors_total: AtomicU64,
    bytes: AtomicU64,
    dropped_total: AtomicU64,
    removed_total: AtomicU64,
    cursors: Mutex<BTreeMap<String, u64>>,
    /// Acknowledgements handed over with [`Journal::ack_soon`], not yet committed: the writer
    /// takes them into its next commit (records or a retention tick, whichever comes first).
    soon: Mutex<HashMap<String, u64>>,
    /// The newest committed records (up to [`RECENT_RECORDS`]), as the writer had them: the
    /// consumers that follow the journal's end (Sparkplug, the context layer, the live view,
    /// the interval index) read them from here instead of decoding the tail block each time.
    recent: Mutex<std::collections::VecDeque<Record>>,
    commit_buckets: [AtomicU64; COMMIT_BUCKETS_MS.len()],
    commit_micros_sum: AtomicU64,
    held_records: AtomicU64,
}

impl Counters {
    /// Records after `after` from the recent ones, when they hold the next one (`None`: read
    /// the file).
    fn read_recent(&self, after: u64, max: usize) -> Option<Vec<Record>> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let first = recent.front()?.seq;
        let last = recent.back()?.seq;
        if after >= last {
            // Nothing newer is committed (every commit's records come here first).
            return Some(Vec::new());
        }
        if after < first.saturating_sub(1) {
            return None;
        }
        let skip = (after + 1 - first) as usize;
        Some(recent.iter().skip(skip).take(max).cloned().collect())
    }

    fn remember(&self, start_seq: u64, records: Vec<RecordKind>) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.back().is_some_and(|r| r.seq + 1 != start_seq) {
            recent.clear();
        }
        let skip = records.len().saturating_sub(RECENT_RECORDS);
        for (i, kind) in records.into_iter().enumerate().skip(skip) {
            recent.push_back(Record {
                seq: start_seq + i as u64,
                kind,
            });
        }
        let over = recent.len().saturating_sub(RECENT_RECORDS);
        recent.drain(..over);
    }

    /// Retention removed everything up to `last`: so does the recent list.
    fn forget_through(&self, last: u64) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        while recent.front().is_some_and(|r| r.seq <= last) {
            recent.pop_front();
        }
    }

    fn ack_soon(&self, cursor: String, upto: u64) {
        let mut soon = self.soon.lock().unwrap_or_else(|p| p.into_inner());
        let e = soon.entry(cursor).or_insert(upto);
        *e = (*e).max(upto);
    }

    fn observe_commit(&self, d: Duration) {
        let ms = d.as_secs_f64() * 1000.0;
        for (b, le) in self.commit_buckets.iter().zip(COMMIT_BUCKETS_MS) {
            if ms <= le {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.commit_micros_sum
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct DictVecs {
    machines: Vec<MachineId>,
    signals: Vec<SignalId>,
}

impl Dictionary for DictVecs {
    fn machine(&self, id: u32) -> Option<&MachineId> {
        self.machines.get(id as usize)
    }
    fn signal(&self, id: u32) -> Option<&SignalId> {
        self.signals.get(id as usize)
    }
}

/// What readers share: the database and the dictionary.
struct Core {
    db: Database,
    path: PathBuf,
    dict: RwLock<DictVecs>,
}

impl Core {
    fn open(dir: &Path, create: bool) -> Result<Core, JournalError> {
        let path = dir.join(JOURNAL_FILE);
        if !create && !path.exists() {
            return Err(JournalError::Missing { path });
        }
        if create {
            std::fs::create_dir_all(dir).map_err(|e| JournalError::Open {
                path: path.clone(),
                detail: format!("cannot create the data directory: {e}"),
            })?;
        }
        // redb's page cache would otherwise grow toward 1 GiB on a long-running bridge (see
        // CACHE_BYTES).
        let db = match Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
        {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(JournalError::AlreadyOpen { path });
            }
            Err(e) => {
                return Err(JournalError::Open {
                    path,
                    detail: e.to_string(),
                });
            }
        };
        // Make sure every table exists so readers never meet a missing one.
        let w = st!(db.begin_write(), "starting the first transaction")?;
        {
            st!(w.open_table(BLOCKS), "creating tables")?;
            st!(w.open_table(BLOCK_META), "creating tables")?;
            st!(w.open_table(MACHINES), "creating tables")?;
            st!(w.open_table(SIGNALS), "creating tables")?;
            st!(w.open_table(CURSORS), "creating tables")?;
            st!(w.open_table(STATES), "creating tables")?;
            let mut meta = st!(w.open_table(META), "creating tables")?;
            let fmt = st!(meta.get(META_FORMAT), "reading the format")?.map(|g| g.value());
            match fmt {
                None => {
                    st!(
                        meta.insert(META_FORMAT, u64::from(codec::FORMAT_VERSION)),
                        "writing the format"
                    )?;
                }
                Some(v) if v > u64::from(codec::FORMAT_VERSION) => {
                    return Err(JournalError::Open {
                        path,
                        detail: format!(
                            "it was written by a newer shopbridge (format {v}, this one reads up to {})",
                            codec::FORMAT_VERSION
                        ),
                    });
                }
                // Blocks of the newer format may follow: say so, so that an older shopbridge
                // refuses the file instead of failing on them.
                Some(v) if v < u64::from(codec::FORMAT_VERSION) => {
                    st!(
                        meta.insert(META_FORMAT, u64::from(codec::FORMAT_VERSION)),
                        "writing the format"
                    )?;
                }
                Some(_) => {}
            }
        }
        st!(w.commit(), "committing the first transaction")?;
        let core = Core {
            db,
            path,
            dict: RwLock::new(DictVecs::default()),
        };
        core.load_dict()?;
        Ok(core)
    }

    fn load_dict(&self) -> Result<(), JournalError> {
        let r = st!(self.db.begin_read(), "reading the dictionary")?;
        let mut d = DictVecs::default();
        let t = st!(r.open_table(MACHINES), "reading the dictionary")?;
        for e in st!(t.iter(), "reading the dictionary")? {
            let (k, v) = st!(e, "reading the dictionary")?;
            let id = MachineId::new(v.value()).map_err(|err| JournalError::Open {
                path: self.path.clone(),
                detail: format!("dictionary entry {} is not a machine id: {err}", k.value()),
            })?;
            if k.value() as usize != d.machines.len() {
                return Err(JournalError::Open {
                    path: self.path.clone(),
                    detail: format!("machine dictionary has a hole at {}", d.machines.len()),
                });
            }
            d.machines.push(id);
        }
        let t = st!(r.open_table(SIGNALS), "reading the dictionary")?;
        for e in st!(t.iter(), "reading the dictionary")? {
            let (k, v) = st!(e, "reading the dictionary")?;
            if k.value() as usize != d.signals.len() {
                return Err(JournalError::Open {
                    path: self.path.clone(),
                    detail: format!("signal dictionary has a hole at {}", d.signals.len()),
                });
            }
            d.signals.push(SignalId::new(v.value()));
        }
        *self.dict.write().unwrap_or_else(|p| p.into_inner()) = d;
        Ok(())
    }

    /// Records with `seq > after`, at most `max`, in sequence order.
    fn read(&self, after: u64, max: usize) -> Result<Vec<Record>, JournalError> {
        let mut out = Vec::new();
        if max == 0 {
            return Ok(out);
        }
        let r = st!(self.db.begin_read(), "reading")?;
        let blocks = st!(r.open_table(BLOCKS), "reading")?;
        let start = match st!(blocks.range(..=after.saturating_add(1)), "reading")?.next_back() {
            Some(e) => st!(e, "reading")?.0.value(),
            None => 0,
        };
        let dict = self.dict.read().unwrap_or_else(|p| p.into_inner());
        for e in st!(blocks.range(start..), "reading")? {
            let (k, v) = st!(e, "reading")?;
            let first_seq = k.value();
            codec::decode_block(v.value(), first_seq, after, &*dict, &mut out, max)
                .map_err(|source| JournalError::Codec { first_seq, source })?;
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }

    /// The seq after which the first record at or after `t` is (a start position for a cursor).
    fn seek_time(&self, t: Timestamp) -> Result<u64, JournalError> {
        let r = st!(self.db.begin_read(), "seeking")?;
        let meta = st!(r.open_table(BLOCK_META), "seeking")?;
        let mut block_first = None;
        let mut last_seq = 0;
        for e in st!(meta.iter(), "seeking")? {
            let (k, v) = st!(e, "seeking")?;
            let (last, _min, max, _bytes) = v.value();
            last_seq = last;
            if max >= t.as_micros() {
                block_first = Some(k.value());
                break;
            }
        }
        let Some(first) = block_first else {
            return Ok(last_seq.max(self.next_seq_hint()?.saturating_sub(1)));
        };
        let mut pos = first.saturating_sub(1);
        loop {
            let batch = self.read(pos, 4096)?;
            if batch.is_empty() {
                return Ok(pos);
            }
            for rec in &batch {
                if rec.kind.time() >= t {
                    return Ok(rec.seq - 1);
                }
                pos = rec.seq;
            }
        }
    }

    fn state(&self, key: &str) -> Result<Option<Vec<u8>>, JournalError> {
        let r = st!(self.db.begin_read(), "reading state")?;
        let t = st!(r.open_table(STATES), "reading state")?;
        Ok(st!(t.get(key), "reading state")?.map(|g| g.value().to_vec()))
    }

    fn next_seq_hint(&self) -> Result<u64, JournalError> {
        let r = st!(self.db.begin_read(), "reading meta")?;
        let meta = st!(r.open_table(META), "reading meta")?;
        Ok(st!(meta.get(META_NEXT_SEQ), "reading meta")?
            .map(|g| g.value())
            .unwrap_or(1))
    }

    fn file_bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }
}

enum Cmd {
    Append {
        records: Vec<RecordKind>,
        done: oneshot::Sender<Result<Range<u64>, JournalError>>,
    },
    /// Records derived from others, with the deriving consumer's cursor and state: all three
    /// commit together, so a crash never writes the records twice or loses the state.
    AppendDerived {
        records: Vec<RecordKind>,
        cursor: String,
        upto: u64,
        state: Option<Vec<u8>>,
        done: oneshot::Sender<Result<Range<u64>, JournalError>>,
    },
    Ack {
        cursor: String,
        upto: u64,
        done: oneshot::Sender<Result<(), JournalError>>,
    },
    OpenCursor {
        cursor: String,
        start: StartAt,
        done: oneshot::Sender<Result<u64, JournalError>>,
    },
    Tick,
    Shutdown,
}

/// A journal opened for writing (one per data directory; the file is locked).
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

/// The open database as readers find it: taken on close (so that the file is released once
/// readers finish), and swapped by the writer when it reopens the file after an I/O error.
type SharedCore = Arc<RwLock<Option<Arc<Core>>>>;

struct Inner {
    core: SharedCore,
    tx: mpsc::Sender<Cmd>,
    committed: watch::Sender<u64>,
    counters: Arc<Counters>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Set by `close`; a writer holding records it cannot write gives up when it sees it.
    closed: Arc<AtomicBool>,
}

/// A ticket for records handed to the writer: resolves once they are durable.
pub struct AppendTicket(oneshot::Receiver<Result<Range<u64>, JournalError>>);

impl AppendTicket {
    pub async fn durable(self) -> Result<Range<u64>, JournalError> {
        self.0.await.unwrap_or(Err(JournalError::Closed))
    }
}

pub(crate) fn valid_cursor_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.' | ':')
        })
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir` and starts its writer thread.
    pub fn open(dir: &Path, opts: JournalOptions) -> Result<Journal, JournalError> {
        let core = Arc::new(Core::open(dir, true)?);
        let counters = Arc::new(Counters::default());
        let shared: SharedCore = Arc::new(RwLock::new(Some(core.clone())));
        let closed = Arc::new(AtomicBool::new(false));
        let writer = Writer::load(
            core.clone(),
            counters.clone(),
            opts.clone(),
            shared.clone(),
            closed.clone(),
        )?;
        let (committed, _) = watch::channel(writer.next_seq - 1);
        let (tx, rx) = mpsc::channel::<Cmd>(1024);
        let committed_tx = committed.clone();
        let handle = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer.run(rx, committed_tx))
            .map_err(|e| JournalError::Open {
                path: core.path.clone(),
                detail: format!("cannot start the writer thread: {e}"),
            })?;
        // A ticker wakes the writer for retention; it stops when the writer is gone.
        let tick_tx = tx.downgrade();
        let interval = opts.retention_interval;
        std::thread::Builder::new()
            .name("journal-retention".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(interval);
                    let Some(tx) = tick_tx.upgrade() else { return };
                    if tx.is_closed() {
                        return;
                    }
                    let _ = tx.try_send(Cmd::Tick);
                }
            })
            .map_err(|e| JournalError::Open {
                path: core.path.clone(),
                detail: format!("cannot start the retention thread: {e}"),
            })?;
        Ok(Journal {
            inner: Arc::new(Inner {
                core: shared,
                tx,
                committed,
                counters,
                writer: Mutex::new(Some(handle)),
                closed,
            }),
        })
    }

    /// Hands records to the writer (waiting for room: back-pressure) and returns a ticket that
    /// resolves once they are durable. Lets a producer keep several commits in flight.
    pub async fn submit(&self, records: Vec<RecordKind>) -> Result<AppendTicket, JournalError> {
        let (done, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Cmd::Append { records, done })
            .await
            .map_err(|_| JournalError::Closed)?;
        Ok(AppendTicket(rx))
    }

    /// Appends records and returns their sequence numbers once they are durable.
    pub async fn append(&self, records: Vec<RecordKind>) -> Result<Range<u64>, JournalError> {
        self.submit(records).await?.durable().await
    }

    /// Blocking form of [`Journal::append`] for threads outside the runtime.
    pub fn append_blocking(&self, records: Vec<RecordKind>) -> Result<Range<u64>, JournalError> {
        let (done, rx) = oneshot::channel();
        self.inner
            .tx
            .blocking_send(Cmd::Append { records, done })
            .map_err(|_| JournalError::Closed)?;
        rx.blocking_recv().unwrap_or(Err(JournalError::Closed))
    }

    /// Records with `seq > after`, at most `max`.
    pub fn read(&self, after: u64, max: usize) -> Result<Vec<Record>, JournalError> {
        if !self.inner.closed.load(Ordering::Relaxed) {
            if let Some(records) = self.inner.counters.read_recent(after, max) {
                return Ok(records);
            }
        }
        self.core()?.read(after, max)
    }

    fn core(&self) -> Result<Arc<Core>, JournalError> {
        self.inner
            .core
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(JournalError::Closed)
    }

    /// The seq after which the first record at or after `t` is (block metadata narrows the
    /// search to one block).
    pub fn seek_time(&self, t: Timestamp) -> Result<u64, JournalError> {
        self.core()?.seek_time(t)
    }

    /// The last durable sequence number (0 when empty).
    pub fn last_seq(&self) -> u64 {
        *self.inner.committed.borrow()
    }

    /// The first sequence number still stored.
    pub fn first_seq(&self) -> u64 {
        self.inner.counters.first_seq.load(Ordering::Relaxed)
    }

    /// Notifies on every commit with the last durable seq.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.committed.subscribe()
    }

    /// Opens (or resumes) a named durable cursor. An existing cursor resumes after its last
    /// acknowledgement and ignores `start`; a new one starts where `start` says.
    pub async fn cursor(&self, name: &str, start: StartAt) -> Result<Cursor, JournalError> {
        if !valid_cursor_name(name) {
            return Err(JournalError::CursorName(name.to_string()));
        }
        let (done, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Cmd::OpenCursor {
                cursor: name.to_string(),
                start,
                done,
            })
            .await
            .map_err(|_| JournalError::Closed)?;
        let acked = rx.await.unwrap_or(Err(JournalError::Closed))?;
        Ok(Cursor::new(self.clone(), name.to_string(), acked))
    }

    /// Appends records derived from the journal itself, acknowledges `cursor` up to `upto`
    /// and (when given) saves `state` under the cursor's name, in one commit.
    pub async fn append_derived(
        &self,
        records: Vec<RecordKind>,
        cursor: &str,
        upto: u64,
        state: Option<Vec<u8>>,
    ) -> Result<Range<u64>, JournalError> {
        if !valid_cursor_name(cursor) {
            return Err(JournalError::CursorName(cursor.to_string()));
        }
        let (done, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Cmd::AppendDerived {
                records,
                cursor: cursor.to_string(),
                upto,
                state,
                done,
            })
            .await
            .map_err(|_| JournalError::Closed)?;
        rx.await.unwrap_or(Err(JournalError::Closed))
    }

    /// The state a consumer saved with [`Journal::append_derived`].
    pub fn state(&self, cursor: &str) -> Result<Option<Vec<u8>>, JournalError> {
        self.core()?.state(cursor)
    }

    /// Records that a cursor's consumer is done with everything up to `upto`, without waiting
    /// and without a commit of its own: the acknowledgement rides on the writer's next commit
    /// (the next append, else the next retention tick, else closing). A crash before that
    /// commit makes the consumer deliver those records again (at least once), never skip them.
    pub(crate) fn ack_soon(&self, cursor: &str, upto: u64) {
        self.inner.counters.ack_soon(cursor.to_string(), upto);
    }

    pub(crate) async fn ack(&self, cursor: &str, upto: u64) -> Result<(), JournalError> {
        let (done, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Cmd::Ack {
                cursor: cursor.to_string(),
                upto,
                done,
            })
            .await
            .map_err(|_| JournalError::Closed)?;
        rx.await.unwrap_or(Err(JournalError::Closed))
    }

    pub fn stats(&self) -> JournalStats {
        let c = &self.inner.counters;
        JournalStats {
            first_seq: c.first_seq.load(Ordering::Relaxed),
            last_seq: self.last_seq(),
            appended_total: c.appended_total.load(Ordering::Relaxed),
            commits_total: c.commits_total.load(Ordering::Relaxed),
            commit_errors_total: c.commit_errors_total.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            file_bytes: self.core().map(|c| c.file_bytes()).unwrap_or(0),
            dropped_total: c.dropped_total.load(Ordering::Relaxed),
            removed_total: c.removed_total.load(Ordering::Relaxed),
            cursors: c.cursors.lock().map(|m| m.clone()).unwrap_or_default(),
            commit_buckets: c
                .commit_buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            commit_micros_sum: c.commit_micros_sum.load(Ordering::Relaxed),
            held_records: c.held_records.load(Ordering::Relaxed),
        }
    }

    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Relaxed)
    }

    /// Stops the writer after everything already handed to it is committed. Appends after this
    /// fail with [`JournalError::Closed`].
    pub fn close(&self) {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = self.inner.tx.try_send(Cmd::Shutdown).or_else(|e| match e {
            mpsc::error::TrySendError::Full(c) => self.inner.tx.blocking_send(c).map_err(|_| ()),
            mpsc::error::TrySendError::Closed(_) => Ok(()),
        });
        let handle = self.inner.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
        self.inner
            .core
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }

    /// [`Journal::close`] from async code (runs the blocking join off the runtime's workers).
    pub async fn close_async(&self) {
        let j = self.clone();
        let _ = tokio::task::spawn_blocking(move || j.close()).await;
    }
}

/// A journal opened only for reading (exports), when no bridge holds it.
pub struct ReadOnlyJournal {
    core: Core,
}

impl ReadOnlyJournal {
    pub fn open(dir: &Path) -> Result<ReadOnlyJournal, JournalError> {
        Ok(ReadOnlyJournal {
            core: Core::open(dir, false)?,
        })
    }
    pub fn read(&self, after: u64, max: usize) -> Result<Vec<Record>, JournalError> {
        self.core.read(after, max)
    }
    pub fn seek_time(&self, t: Timestamp) -> Result<u64, JournalError> {
        self.core.seek_time(t)
    }
    pub fn state(&self, cursor: &str) -> Result<Option<Vec<u8>>, JournalError> {
        self.core.state(cursor)
    }
}

/// The writer thread's state.
struct Writer {
    /// The database; `None` only for the moment of a reopen.
    core: Option<Arc<Core>>,
    /// The data directory (the database file's parent).
    dir: PathBuf,
    shared: SharedCore,
    closed: Arc<AtomicBool>,
    counters: Arc<Counters>,
    opts: JournalOptions,
    next_seq: u64,
    machine_ids: HashMap<MachineId, u32>,
    signal_ids: HashMap<SignalId, u32>,
    /// Dictionary entries assigned but not yet committed.
    pending_machines: Vec<(u32, MachineId)>,
    pending_signals: Vec<(u32, SignalId)>,
    cursors: HashMap<String, u64>,
    /// (first seq, last seq, max time, bytes) of every stored block, oldest first.
    blocks: std::collections::VecDeque<BlockInfo>,
    dropped_total: u64,
    in_drop_episode: bool,
    last_retention: Instant,
    committed: Option<watch::Sender<u64>>,
    /// The last block this writer wrote, which later small commits extend.
    tail: Option<Tail>,
}

/// A stored block as retention sees it: (first seq, last seq, max time µs, encoded bytes).
type BlockInfo = (u64, u64, i64, u64);

/// Tail blocks stop growing at this encoded size, bounding what a commit rewrites: a 4 KiB
/// page, less room for redb's leaf header and the entry's key and offsets.
const TAIL_MAX_BYTES: usize = (4 << 10) - 96;
/// A tail's body may grow to this many bytes before compression, as long as what is stored
/// stays within [`TAIL_MAX_BYTES`].
const TAIL_BODY_MAX_BYTES: usize = 16 << 10;
/// Fresh blocks stop at this encoded size (or at `block_records`): redb allocates pages in
/// powers of two, so a block just under 32 KiB wastes little.
const BLOCK_MAX_BYTES: usize = (32 << 10) - 96;

/// The block a writer may still extend: its body and what is needed to append to it.
#[derive(Clone)]
struct Tail {
    first: u64,
    count: u64,
    base: i64,
    prev_received: i64,
    body: Vec<u8>,
    min: i64,
    max: i64,
}

struct WriterDict<'a> {
    w: &'a mut Writer,
}

impl Interner for WriterDict<'_> {
    fn machine_id(&mut self, m: &MachineId) -> u32 {
        if let Some(id) = self.w.machine_ids.get(m) {
            return *id;
        }
        let id = self.w.machine_ids.len() as u32;
        self.w.machine_ids.insert(m.clone(), id);
        self.w.pending_machines.push((id, m.clone()));
        id
    }
    fn signal_id(&mut self, s: &SignalId) -> u32 {
        if let Some(id) = self.w.signal_ids.get(s) {
            return *id;
        }
        let id = self.w.signal_ids.len() as u32;
        self.w.signal_ids.insert(s.clone(), id);
        self.w.pending_signals.push((id, s.clone()));
        id
    }
}

enum Pending {
    Append(usize, oneshot::Sender<Result<Range<u64>, JournalError>>),
    Ack(oneshot::Sender<Result<(), JournalError>>),
    Cursor(oneshot::Sender<Result<u64, JournalError>>, u64),
}

impl Writer {
    fn load(
        core: Arc<Core>,
        counters: Arc<Counters>,
        opts: JournalOptions,
        shared: SharedCore,
        closed: Arc<AtomicBool>,
    ) -> Result<Writer, JournalError> {
        let r = st!(core.db.begin_read(), "loading")?;
        let meta = st!(r.open_table(META), "loading")?;
        let mut next_seq = st!(meta.get(META_NEXT_SEQ), "loading")?
            .map(|g| g.value())
            .unwrap_or(1);
        let dropped_total = st!(meta.get(META_DROPPED), "loading")?
            .map(|g| g.value())
            .unwrap_or(0);
        let bm = st!(r.open_table(BLOCK_META), "loading")?;
        let mut blocks = std::collections::VecDeque::new();
        let mut bytes = 0;
        for e in st!(bm.iter(), "loading")? {
            let (k, v) = st!(e, "loading")?;
            let (last, _min, max, b) = v.value();
            blocks.push_back((k.value(), last, max, b));
            bytes += b;
            // next_seq is written in the same transaction as every block, but be defensive.
            next_seq = next_seq.max(last + 1);
        }
        let ct = st!(r.open_table(CURSORS), "loading")?;
        let mut cursors = HashMap::new();
        for e in st!(ct.iter(), "loading")? {
            let (k, v) = st!(e, "loading")?;
            cursors.insert(k.value().to_string(), v.value());
        }
        let dict = core.dict.read().unwrap_or_else(|p| p.into_inner());
        let machine_ids = dict
            .machines
            .iter()
            .enumerate()
            .map(|(i, m)| (m.clone(), i as u32))
            .collect();
        let signal_ids = dict
            .signals
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i as u32))
            .collect();
        drop(dict);
        counters.bytes.store(bytes, Ordering::Relaxed);
        counters
            .dropped_total
            .store(dropped_total, Ordering::Relaxed);
        counters.first_seq.store(
            blocks.front().map(|b| b.0).unwrap_or(next_seq),
            Ordering::Relaxed,
        );
        if let Ok(mut c) = counters.cursors.lock() {
            *c = cursors.iter().map(|(k, v)| (k.clone(), *v)).collect();
        }
        Ok(Writer {
            dir: core
                .path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            core: Some(core),
            shared,
            closed,
            counters,
            opts,
            next_seq,
            machine_ids,
            signal_ids,
            pending_machines: Vec::new(),
            pending_signals: Vec::new(),
            cursors,
            blocks,
            dropped_total,
            in_drop_episode: false,
            last_retention: Instant::now(),
            committed: None,
            tail: None,
        })
    }

    fn run(mut self, mut rx: mpsc::Receiver<Cmd>, committed: watch::Sender<u64>) {
        self.committed = Some(committed.clone());
        let mut shutting_down = false;
        while !shutting_down {
            let Some(first) = rx.blocking_recv() else {
                break;
            };
            let mut cmds = vec![first];
            let mut n_records = 0usize;
            loop {
                match cmds.last() {
                    Some(Cmd::Append { records, .. } | Cmd::AppendDerived { records, .. }) => {
                        n_records += records.len()
                    }
                    Some(Cmd::Shutdown) => {
                        shutting_down = true;
                        break;
                    }
                    _ => {}
                }
                if n_records >= self.opts.batch_max_records {
                    break;
                }
                match rx.try_recv() {
                    Ok(c) => cmds.push(c),
                    Err(_) => break,
                }
            }
            self.commit_group(cmds);
            if let Err(e) = self.maybe_retain(false) {
                tracing::warn!(error = %e, "journal retention pass failed; will retry");
            }
            committed.send_replace(self.next_seq - 1);
        }
        // No new commands from here on (senders see Closed); what raced in before that is
        // still committed, so nothing handed over is dropped.
        rx.close();
        let rest: Vec<Cmd> = std::iter::from_fn(|| rx.try_recv().ok())
            .filter(|c| !matches!(c, Cmd::Shutdown | Cmd::Tick))
            .collect();
        if !rest.is_empty() || !self.soon_is_empty() {
            self.commit_group(rest);
        }
        committed.send_replace(self.next_seq - 1);
    }

    fn commit_group(&mut self, cmds: Vec<Cmd>) {
        let start_seq = self.next_seq;
        let mut records: Vec<RecordKind> = Vec::new();
        let mut pending = Vec::with_capacity(cmds.len());
        let mut acks: Vec<(String, u64)> = Vec::new();
        let mut states: Vec<(String, Vec<u8>)> = Vec::new();
        let mut tick = false;
        for c in cmds {
            match c {
                Cmd::Append { records: r, done } => {
                    pending.push(Pending::Append(r.len(), done));
                    if records.is_empty() {
                        records = r;
                    } else {
                        records.extend(r);
                    }
                }
                Cmd::AppendDerived {
                    records: r,
                    cursor,
                    upto,
                    state,
                    done,
                } => {
                    pending.push(Pending::Append(r.len(), done));
                    records.extend(r);
                    let prev = self.cursors.get(&cursor).copied().unwrap_or(0);
                    acks.push((cursor.clone(), upto.min(self.next_seq - 1).max(prev)));
                    if let Some(state) = state {
                        states.push((cursor, state));
                    }
                }
                Cmd::Ack { cursor, upto, done } => {
                    // Acknowledgements only move forward, and never past what is stored.
                    let prev = self.cursors.get(&cursor).copied().unwrap_or(0);
                    acks.push((cursor, upto.min(self.next_seq - 1).max(prev)));
                    pending.push(Pending::Ack(done));
                }
                Cmd::OpenCursor {
                    cursor,
                    start,
                    done,
                } => {
                    if let Some(&acked) = self.cursors.get(&cursor) {
                        pending.push(Pending::Cursor(done, acked));
                        continue;
                    }
                    let pos = match start {
                        StartAt::Beginning => 0,
                        StartAt::End => self.next_seq - 1,
                        StartAt::Sequence(s) => s.saturating_sub(1).min(self.next_seq - 1),
                        StartAt::Time(t) => match self.db().and_then(|c| c.seek_time(t)) {
                            Ok(p) => p,
                            Err(e) => {
                                let _ = done.send(Err(e));
                                continue;
                            }
                        },
                    };
                    acks.push((cursor, pos));
                    pending.push(Pending::Cursor(done, pos));
                }
                Cmd::Tick => tick = true,
                Cmd::Shutdown => {}
            }
        }
        let soon = self.take_soon();
        for (cursor, upto) in &soon {
            let prev = self.cursors.get(cursor).copied().unwrap_or(0);
            let upto = (*upto).min(self.next_seq - 1);
            if upto > prev {
                acks.push((cursor.clone(), upto));
            }
        }
        // One position per cursor, the furthest: an acknowledgement taken from `soon` may be
        // older than one a command of this group carries.
        let mut merged: Vec<(String, u64)> = Vec::with_capacity(acks.len());
        for (c, upto) in acks {
            match merged.iter_mut().find(|m| m.0 == c) {
                Some(m) => m.1 = m.1.max(upto),
                None => merged.push((c, upto)),
            }
        }
        let acks = merged;
        if records.is_empty() && acks.is_empty() && states.is_empty() {
            let next = self.next_seq;
            for p in pending {
                match p {
                    Pending::Cursor(done, pos) => {
                        let _ = done.send(Ok(pos));
                    }
                    Pending::Append(_, done) => {
                        let _ = done.send(Ok(next..next));
                    }
                    Pending::Ack(done) => {
                        let _ = done.send(Ok(()));
                    }
                }
            }
            if tick {
                if let Err(e) = self.maybe_retain(true) {
                    tracing::warn!(error = %e, "journal retention pass failed; will retry");
                }
            }
            return;
        }
        let began = Instant::now();
        let result = self.write_held(&records, &acks, &states);
        self.counters.observe_commit(began.elapsed());
        match result {
            Ok((new_blocks, new_tail)) => {
                self.next_seq = start_seq + records.len() as u64;
                self.pending_machines.clear();
                self.pending_signals.clear();
                if !records.is_empty() {
                    self.tail = new_tail;
                }
                let mut bytes = self.counters.bytes.load(Ordering::Relaxed);
                for b in new_blocks {
                    // A rewritten tail block replaces its older version.
                    if let Some(prev) = self.blocks.back_mut().filter(|p| p.0 == b.0) {
                        bytes = bytes - prev.3 + b.3;
                        *prev = b;
                    } else {
                        bytes += b.3;
                        self.blocks.push_back(b);
                    }
                }
                self.counters.bytes.store(bytes, Ordering::Relaxed);
                self.counters
                    .appended_total
                    .fetch_add(records.len() as u64, Ordering::Relaxed);
                self.counters.commits_total.fetch_add(1, Ordering::Relaxed);
                if self.counters.first_seq.load(Ordering::Relaxed) == 0 {
                    self.counters.first_seq.store(start_seq, Ordering::Relaxed);
                }
                for (c, upto) in acks {
                    self.cursors.insert(c, upto);
                }
                if !records.is_empty() {
                    self.counters
                        .remember(start_seq, std::mem::take(&mut records));
                }
                if let Some(w) = &self.committed {
                    w.send_replace(self.next_seq - 1);
                }
                if let Ok(mut c) = self.counters.cursors.lock() {
                    *c = self.cursors.iter().map(|(k, v)| (k.clone(), *v)).collect();
                }
                let mut seq = start_seq;
                for p in pending {
                    match p {
                        Pending::Append(n, done) => {
                            let _ = done.send(Ok(seq..seq + n as u64));
                            seq += n as u64;
                        }
                        Pending::Ack(done) => {
                            let _ = done.send(Ok(()));
                        }
                        Pending::Cursor(done, pos) => {
                            let _ = done.send(Ok(pos));
                        }
                    }
                }
            }
            Err(e) => {
                // The acknowledgements taken for this commit wait for the next one.
                for (cursor, upto) in soon {
                    self.counters.ack_soon(cursor, upto);
                }
                self.counters
                    .commit_errors_total
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, records = records.len(), "journal commit failed; the records were refused");
                let msg = e.to_string();
                for p in pending {
                    let err = || JournalError::Storage {
                        op: "committing",
                        detail: msg.clone(),
                    };
                    match p {
                        Pending::Append(_, done) => {
                            let _ = done.send(Err(err()));
                        }
                        Pending::Ack(done) => {
                            let _ = done.send(Err(err()));
                        }
                        Pending::Cursor(done, _) => {
                            let _ = done.send(Err(err()));
                        }
                    }
                }
            }
        }
    }

    fn take_soon(&self) -> HashMap<String, u64> {
        std::mem::take(&mut *self.counters.soon.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn soon_is_empty(&self) -> bool {
        self.counters
            .soon
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    fn db(&self) -> Result<&Arc<Core>, JournalError> {
        self.core.as_ref().ok_or(JournalError::Storage {
            op: "reopening",
            detail: "the journal file is being reopened".into(),
        })
    }

    /// [`Writer::write_txn`], holding on while it cannot write: while the file system has
    /// less than `min_free_bytes` free, or a write fails with an I/O error (a full disk),
    /// the records stay here and the writer tries again, taking no new commands meanwhile.
    /// The pipeline then waits for room, and the drivers wait for the pipeline (they stop
    /// reading their machines, whose own buffers hold the data), so a full disk pauses
    /// collection instead of dropping records. Gives up (the records are refused) only when the
    /// journal is closing.
    fn write_held(
        &mut self,
        records: &[RecordKind],
        acks: &[(String, u64)],
        states: &[(String, Vec<u8>)],
    ) -> Result<(Vec<BlockInfo>, Option<Tail>), JournalError> {
        let mut held_since: Option<Instant> = None;
        let mut last_log: Option<Instant> = None;
        let mut wait = Duration::from_millis(100);
        loop {
            let reopened = if self.core.is_none() {
                self.reopen().err().map(|e| e.to_string())
            } else {
                None
            };
            let why = match reopened.or_else(|| self.free_space_short()) {
                Some(why) => why,
                None => match self.write_txn(records, acks, states) {
                    Ok(done) => {
                        if let Some(since) = held_since {
                            self.counters.held_records.store(0, Ordering::Relaxed);
                            tracing::info!(
                                records = records.len(),
                                paused_s = since.elapsed().as_secs(),
                                "the journal is writing again; the records it held are stored and collection resumes"
                            );
                        }
                        return Ok(done);
                    }
                    Err(e) if is_io(&e) => {
                        self.counters
                            .commit_errors_total
                            .fetch_add(1, Ordering::Relaxed);
                        // redb refuses every operation after a failed write until the file is
                        // opened again.
                        if let Err(r) = self.reopen() {
                            tracing::warn!(error = %r, "cannot reopen the journal yet; will retry");
                        }
                        e.to_string()
                    }
                    Err(e) => return Err(e),
                },
            };
            if held_since.is_none() {
                held_since = Some(Instant::now());
                self.counters
                    .held_records
                    .store(records.len().max(1) as u64, Ordering::Relaxed);
            }
            if self.closed.load(Ordering::SeqCst) {
                tracing::error!(
                    records = records.len(),
                    reason = %why,
                    "the journal is closing while it cannot write: these records are lost"
                );
                return Err(JournalError::Storage {
                    op: "committing",
                    detail: why,
                });
            }
            if last_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
                last_log = Some(Instant::now());
                tracing::error!(
                    records = records.len(),
                    paused_s = held_since.map(|t| t.elapsed().as_secs()).unwrap_or(0),
                    reason = %why,
                    "the journal cannot write: it holds these records and retries; collection is paused (drivers stop reading their machines) until there is room. Free space in the data directory"
                );
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_secs(2));
        }
    }

    /// Why the journal's file system is too full to write to, if it is.
    fn free_space_short(&self) -> Option<String> {
        let dir = &self.dir;
        let free = free_bytes(dir)?;
        (free < self.opts.min_free_bytes).then(|| {
            format!(
                "{} has {} KiB free, less than journal.min_free_bytes ({} KiB)",
                dir.display(),
                free >> 10,
                self.opts.min_free_bytes >> 10
            )
        })
    }

    /// Closes the database and opens it again (after redb failed a write). Readers get an
    /// error for the moment in between and retry.
    fn reopen(&mut self) -> Result<(), JournalError> {
        self.shared
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        self.core = None;
        let core = Arc::new(Core::open(&self.dir, false)?);
        *self.shared.write().unwrap_or_else(|p| p.into_inner()) = Some(core.clone());
        self.core = Some(core);
        tracing::warn!(dir = %self.dir.display(), "reopened the journal after a failed write");
        Ok(())
    }

    /// One write transaction: blocks, dictionary entries, cursor positions.
    ///
    /// At low rates a commit holds a handful of records; a block each would cost more in redb
    /// entries than in data. So the first records extend the tail block this writer wrote last
    /// (rewriting it: at most [`TAIL_MAX_BYTES`] stored, [`TAIL_BODY_MAX_BYTES`] before
    /// compression) until it holds `block_records`. Returns the
    /// written blocks' (first, last, max time, bytes) and the tail to keep once committed.
    fn write_txn(
        &mut self,
        records: &[RecordKind],
        acks: &[(String, u64)],
        states: &[(String, Vec<u8>)],
    ) -> Result<(Vec<BlockInfo>, Option<Tail>), JournalError> {
        let per_block = self.opts.block_records.max(1) as u64;
        let mut new_blocks = Vec::new();
        let mut encoded = Vec::new();
        let mut seq = self.next_seq;
        let mut i = 0;
        // The block to extend: the tail, while it is small; else a fresh one per chunk.
        let mut current = self
            .tail
            .clone()
            .filter(|t| !records.is_empty() && t.count < per_block);
        let mut extending = current.is_some();
        let mut new_tail = None;
        while i < records.len() {
            let mut block = match current.take() {
                Some(t) => t,
                None => {
                    let base = records[i].time().as_micros();
                    Tail {
                        first: seq,
                        count: 0,
                        base,
                        prev_received: base,
                        body: Vec::with_capacity(BLOCK_MAX_BYTES.min(records.len() * 24)),
                        min: i64::MAX,
                        max: i64::MIN,
                    }
                }
            };
            let limit = if extending {
                TAIL_MAX_BYTES
            } else {
                BLOCK_MAX_BYTES
            };
            let mut added = 0;
            while i < records.len() && block.count < per_block {
                let (mark, prev) = (block.body.len(), block.prev_received);
                let r = &records[i];
                codec::encode_records(
                    std::iter::once(r),
                    &mut block.prev_received,
                    &mut WriterDict { w: self },
                    &mut block.body,
                );
                // Keep blocks inside one redb page allocation; a lone oversized record still
                // gets a block of its own.
                if block.body.len() > limit && block.count > 0 {
                    block.body.truncate(mark);
                    block.prev_received = prev;
                    break;
                }
                let t = r.time().as_micros();
                block.min = block.min.min(t);
                block.max = block.max.max(t);
                block.count += 1;
                added += 1;
                i += 1;
            }
            let mut stored = usize::MAX;
            if added > 0 {
                let bytes = codec::finish_block(block.count, block.base, &block.body);
                stored = bytes.len();
                let last = block.first + block.count - 1;
                new_blocks.push((block.first, last, block.max, bytes.len() as u64));
                encoded.push((block.first, last, block.min, block.max, bytes));
                seq = last + 1;
            }
            // Only a block that is still small may be extended by the next commit.
            new_tail = (stored < TAIL_MAX_BYTES
                && block.body.len() < TAIL_BODY_MAX_BYTES
                && block.count < per_block)
                .then_some(block);
            extending = false;
        }
        // Readers may decode a block as soon as it commits: publish the dictionary first.
        if !self.pending_machines.is_empty() || !self.pending_signals.is_empty() {
            let mut d = self.db()?.dict.write().unwrap_or_else(|p| p.into_inner());
            for (id, m) in &self.pending_machines {
                if *id as usize == d.machines.len() {
                    d.machines.push(m.clone());
                }
            }
            for (id, s) in &self.pending_signals {
                if *id as usize == d.signals.len() {
                    d.signals.push(s.clone());
                }
            }
        }
        let w = st!(self.db()?.db.begin_write(), "starting a write")?;
        {
            let mut blocks = st!(w.open_table(BLOCKS), "writing blocks")?;
            let mut meta = st!(w.open_table(BLOCK_META), "writing blocks")?;
            for (first, last, min, max, bytes) in &encoded {
                st!(blocks.insert(*first, bytes.as_slice()), "writing blocks")?;
                st!(
                    meta.insert(*first, (*last, *min, *max, bytes.len() as u64)),
                    "writing blocks"
                )?;
            }
            let mut mt = st!(w.open_table(MACHINES), "writing the dictionary")?;
            for (id, m) in &self.pending_machines {
                st!(mt.insert(*id, m.as_str()), "writing the dictionary")?;
            }
            let mut stt = st!(w.open_table(SIGNALS), "writing the dictionary")?;
            for (id, s) in &self.pending_signals {
                st!(stt.insert(*id, s.as_str()), "writing the dictionary")?;
            }
            let mut ct = st!(w.open_table(CURSORS), "writing cursors")?;
            for (c, upto) in acks {
                st!(ct.insert(c.as_str(), *upto), "writing cursors")?;
            }
            if !states.is_empty() {
                let mut sv = st!(w.open_table(STATES), "writing consumer state")?;
                for (c, bytes) in states {
                    st!(
                        sv.insert(c.as_str(), bytes.as_slice()),
                        "writing consumer state"
                    )?;
                }
            }
            // next_seq is not written here: the last block's key and meta say it. Retention
            // writes it before it removes blocks, so it survives an empty journal.
        }
        st!(w.commit(), "committing")?;
        Ok((new_blocks, new_tail))
    }

    /// Removes blocks that retention allows. Runs at most once per `retention_interval` unless
    /// `force` or the journal is over its byte limits.
    fn maybe_retain(&mut self, force: bool) -> Result<(), JournalError> {
        let bytes = self.counters.bytes.load(Ordering::Relaxed);
        let over = bytes > self.opts.max_bytes;
        if !force && !over && self.last_retention.elapsed() < self.opts.retention_interval {
            return Ok(());
        }
        self.last_retention = Instant::now();
        let now = self.opts.clock.now();
        let cutoff = now.saturating_sub(self.opts.max_age).as_micros();
        let min_ack = self.cursors.values().copied().min().unwrap_or(u64::MAX);
        let mut total = bytes;
        let mut remove = Vec::new();
        let mut dropped = 0u64;
        let mut hard = false;
        for &(first, last, max_time, b) in &self.blocks {
            if total > self.opts.hard_cap_bytes {
                hard = true;
                if last > min_ack {
                    dropped += last - first.max(min_ack.saturating_add(1)) + 1;
                }
            } else if !(last <= min_ack && (max_time < cutoff || total > self.opts.max_bytes)) {
                break;
            }
            remove.push((first, last, b));
            total -= b;
        }
        if remove.is_empty() {
            self.in_drop_episode = false;
            return Ok(());
        }
        let w = st!(self.db()?.db.begin_write(), "starting retention")?;
        {
            let mut blocks = st!(w.open_table(BLOCKS), "removing blocks")?;
            let mut meta = st!(w.open_table(BLOCK_META), "removing blocks")?;
            for (first, _, _) in &remove {
                st!(blocks.remove(*first), "removing blocks")?;
                st!(meta.remove(*first), "removing blocks")?;
            }
            if dropped > 0 {
                let mut m = st!(w.open_table(META), "writing meta")?;
                st!(
                    m.insert(META_DROPPED, self.dropped_total + dropped),
                    "writing meta"
                )?;
            }
        }
        st!(w.commit(), "committing retention")?;
        if let Some(last) = remove.iter().map(|r| r.1).max() {
            self.counters.forget_through(last);
        }
        let removed: u64 = remove.iter().map(|(f, l, _)| l - f + 1).sum();
        for _ in 0..remove.len() {
            self.blocks.pop_front();
        }
        if self
            .tail
            .as_ref()
            .is_some_and(|t| remove.iter().any(|r| r.0 == t.first))
        {
            self.tail = None;
        }
        self.counters.bytes.store(total, Ordering::Relaxed);
        self.counters
            .removed_total
            .fetch_add(removed, Ordering::Relaxed);
        self.counters.first_seq.store(
            self.blocks.front().map(|b| b.0).unwrap_or(self.next_seq),
            Ordering::Relaxed,
        );
        if dropped > 0 {
            self.dropped_total += dropped;
            self.counters
                .dropped_total
                .store(self.dropped_total, Ordering::Relaxed);
            if !self.in_drop_episode {
                tracing::error!(
                    dropped,
                    hard_cap_bytes = self.opts.hard_cap_bytes,
                    "journal reached its hard size cap: the oldest unacknowledged records were removed \
                     (a consumer is not keeping up or is offline); raise journal.hard_cap_bytes or fix the consumer"
                );
            }
            self.in_drop_episode = true;
        } else if !hard {
            self.in_drop_episode = false;
        }
        Ok(())
    }
}

/// A write the file system failed (a full disk, most often), as opposed to one redb refused
/// for what was written: worth holding the records and trying again.
fn is_io(e: &JournalError) -> bool {
    matches!(e, JournalError::Storage { detail, .. } if detail.contains("I/O") || detail.contains("os error"))
}

/// Bytes an unprivileged process may still write on the file system holding `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: statvfs writes a statvfs into the buffer it is given and reads the C string.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let st = unsafe { st.assume_init() };
    // The field types differ between targets (32-bit ARM boards among them).
    #[allow(clippy::unnecessary_cast)]
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}
