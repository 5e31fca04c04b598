//! Following a CSV file that another program appends to, the way `tail -F` does.
//!
//! Each [`Follower::poll`] looks at the file once and reports what happened as [`Event`]s:
//!
//! - the file does not exist or cannot be read: `Lost` (once per distinct reason);
//! - the file was opened: `Opened`, then its first line as `Header`;
//! - new complete lines: one `Row` each. A last line without its newline is left in the file
//!   and read again at the next poll, once the writer has finished it;
//! - the file shrank (truncated in place, e.g. copy-truncate rotation): read again from the
//!   start, header first;
//! - the path names another file now (renamed away and recreated, on Unix seen by device and
//!   inode): the rest of the old file is read, then the new one from its start;
//! - the file was removed: the rest is read, then `Lost`.
//!
//! The offset only ever moves past complete lines, so no partial line is kept in memory.
//! A quoted field with a line break in it is read correctly when the writer writes the whole
//! record before the follower polls; a record split across two polls is not supported.

use std::fs::{self, File, Metadata};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;

/// Bytes read per poll at most, so that a huge file read from the start does not take all the
/// memory at once; the rest comes at the next polls.
const MAX_READ: u64 = 4 * 1024 * 1024;

/// How far back from the end the last row is looked for when a file is first opened.
const LAST_ROW_WINDOW: u64 = 64 * 1024;

/// What a poll found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The file was opened and is readable.
    Opened,
    /// The file cannot be read; the text says why and names the path.
    Lost(String),
    /// The header line (trimmed names).
    Header(Vec<String>),
    /// A data row.
    Row(Vec<String>),
    /// A line the CSV reader refused (the text names the file).
    BadRow(String),
}

struct Open {
    file: File,
    id: Option<(u64, u64)>,
    /// Where the next unread complete line starts.
    offset: u64,
    header_seen: bool,
}

/// Follows one file. See the module documentation.
pub struct Follower {
    path: PathBuf,
    delimiter: u8,
    from_start: bool,
    open: Option<Open>,
    first_poll: bool,
    last_lost: Option<String>,
}

#[cfg(unix)]
fn file_id(meta: &Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn file_id(_meta: &Metadata) -> Option<(u64, u64)> {
    None
}

impl Follower {
    /// A follower for `path`. With `from_start` false, a file that exists at the first poll is
    /// not replayed: only its last row is reported, then rows as they are appended.
    pub fn new(path: PathBuf, delimiter: u8, from_start: bool) -> Self {
        Follower {
            path,
            delimiter,
            from_start,
            open: None,
            first_poll: true,
            last_lost: None,
        }
    }

    /// Looks at the file once; appends what happened to `events`.
    pub fn poll(&mut self, events: &mut Vec<Event>) {
        let first_poll = std::mem::replace(&mut self.first_poll, false);
        if let Some(open) = &mut self.open {
            match fs::metadata(&self.path) {
                Ok(meta) if file_id(&meta) != open.id => {
                    // Rotated: finish the old file, then open the new one below.
                    self.drain(events);
                    self.open = None;
                }
                Ok(meta) if meta.len() < open.offset => {
                    open.offset = 0;
                    open.header_seen = false;
                }
                Ok(_) => {}
                Err(e) => {
                    self.drain(events);
                    self.open = None;
                    self.lost(events, &e);
                    return;
                }
            }
        }
        if self.open.is_none() {
            let opened = File::open(&self.path).and_then(|file| {
                let meta = file.metadata()?;
                Ok(Open {
                    file,
                    id: file_id(&meta),
                    offset: 0,
                    header_seen: false,
                })
            });
            match opened {
                Ok(open) => {
                    self.open = Some(open);
                    self.last_lost = None;
                    events.push(Event::Opened);
                    if first_poll && !self.from_start {
                        if let Err(e) = self.skip_to_last_row(events) {
                            self.open = None;
                            self.lost(events, &e);
                            return;
                        }
                    }
                }
                Err(e) => {
                    self.lost(events, &e);
                    return;
                }
            }
        }
        self.drain(events);
    }

    fn lost(&mut self, events: &mut Vec<Event>, e: &io::Error) {
        let detail = format!("cannot read {}: {e}", self.path.display());
        if self.last_lost.as_deref() != Some(detail.as_str()) {
            events.push(Event::Lost(detail.clone()));
            self.last_lost = Some(detail);
        }
    }

    /// Reads new complete lines from the open file, if any.
    fn drain(&mut self, events: &mut Vec<Event>) {
        let Some(open) = &mut self.open else { return };
        let mut buf = Vec::new();
        let read = open
            .file
            .seek(SeekFrom::Start(open.offset))
            .and_then(|_| (&mut open.file).take(MAX_READ).read_to_end(&mut buf));
        if let Err(e) = read {
            self.open = None;
            self.lost(events, &e);
            return;
        }
        let Some(last_newline) = buf.iter().rposition(|b| *b == b'\n') else {
            return;
        };
        let complete = &buf[..=last_newline];
        open.offset += complete.len() as u64;
        parse_lines(
            complete,
            self.delimiter,
            &mut open.header_seen,
            &self.path,
            events,
        );
    }

    /// On the first open of an existing file: report the header and the last complete row,
    /// and continue after it.
    fn skip_to_last_row(&mut self, events: &mut Vec<Event>) -> io::Result<()> {
        let Some(open) = &mut self.open else {
            return Ok(());
        };
        let len = open.file.metadata()?.len();
        // The header: the first line.
        let mut head = Vec::new();
        open.file.seek(SeekFrom::Start(0))?;
        (&mut open.file)
            .take(LAST_ROW_WINDOW)
            .read_to_end(&mut head)?;
        let Some(header_end) = head.iter().position(|b| *b == b'\n') else {
            return Ok(()); // no complete header yet; the normal read will find it
        };
        let header_end = header_end as u64 + 1;
        // The last complete line after the header.
        let start = header_end.max(len.saturating_sub(LAST_ROW_WINDOW));
        let mut window = Vec::new();
        open.file.seek(SeekFrom::Start(start))?;
        (&mut open.file)
            .take(len - start)
            .read_to_end(&mut window)?;
        let mut block = head[..header_end as usize].to_vec();
        let mut next = header_end;
        if let Some(last) = window.iter().rposition(|b| *b == b'\n') {
            let line_start = match window[..last].iter().rposition(|b| *b == b'\n') {
                Some(prev) => Some(prev + 1),
                None if start == header_end => Some(0),
                None => None, // a line longer than the window: skip it
            };
            if let Some(line_start) = line_start {
                block.extend_from_slice(&window[line_start..=last]);
            }
            next = start + last as u64 + 1;
        }
        open.offset = next;
        parse_lines(
            &block,
            self.delimiter,
            &mut open.header_seen,
            &self.path,
            events,
        );
        Ok(())
    }
}

/// Parses complete lines: the first record is the header if none was seen yet.
fn parse_lines(
    bytes: &[u8],
    delimiter: u8,
    header_seen: &mut bool,
    path: &std::path::Path,
    events: &mut Vec<Event>,
) {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(bytes);
    let mut record = csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                events.push(Event::BadRow(format!("{}: {e}", path.display())));
                continue;
            }
        }
        if record.len() == 1 && record[0].iter().all(u8::is_ascii_whitespace) {
            continue; // an empty line
        }
        let fields: Vec<String> = record
            .iter()
            .map(|f| {
                String::from_utf8_lossy(f)
                    .trim_start_matches('\u{feff}')
                    .trim()
                    .to_owned()
            })
            .collect();
        if *header_seen {
            events.push(Event::Row(fields));
        } else {
            *header_seen = true;
            events.push(Event::Header(fields));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn row(cells: &[&str]) -> Event {
        Event::Row(cells.iter().map(|s| s.to_string()).collect())
    }
    fn header(cells: &[&str]) -> Event {
        Event::Header(cells.iter().map(|s| s.to_string()).collect())
    }
    fn poll(f: &mut Follower) -> Vec<Event> {
        let mut ev = Vec::new();
        f.poll(&mut ev);
        ev
    }
    fn append(path: &std::path::Path, text: &str) {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn waits_for_the_file_then_reads_it_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.csv");
        let mut f = Follower::new(path.clone(), b',', false);
        let ev = poll(&mut f);
        assert!(
            matches!(&ev[..], [Event::Lost(d)] if d.contains("log.csv") && d.contains("No such file"))
        );
        assert_eq!(poll(&mut f), vec![], "the same reason is reported once");
        append(&path, "Time,RPM\n2026-11-26 10:00:00,1200\n");
        assert_eq!(
            poll(&mut f),
            vec![
                Event::Opened,
                header(&["Time", "RPM"]),
                row(&["2026-11-26 10:00:00", "1200"])
            ]
        );
    }

    #[test]
    fn existing_file_reports_only_its_last_row_then_follows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.csv");
        append(&path, "\u{feff}A;B\r\n1;2\r\n3;4\r\n5;");
        let mut f = Follower::new(path.clone(), b';', false);
        assert_eq!(
            poll(&mut f),
            vec![Event::Opened, header(&["A", "B"]), row(&["3", "4"])]
        );
        assert_eq!(poll(&mut f), vec![], "the partial line waits");
        append(&path, "6\r\n\r\n7;8\r\n");
        assert_eq!(poll(&mut f), vec![row(&["5", "6"]), row(&["7", "8"])]);
    }

    #[test]
    fn from_start_replays_everything_and_quoted_fields_work() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.csv");
        append(&path, "A,B\n1,\"x, y\"\n2,\"say \"\"hi\"\"\"\n");
        let mut f = Follower::new(path.clone(), b',', true);
        assert_eq!(
            poll(&mut f),
            vec![
                Event::Opened,
                header(&["A", "B"]),
                row(&["1", "x, y"]),
                row(&["2", "say \"hi\""])
            ]
        );
    }

    #[test]
    fn truncation_rereads_from_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.csv");
        append(&path, "A\n1\n2\n");
        let mut f = Follower::new(path.clone(), b',', true);
        assert_eq!(poll(&mut f).len(), 4);
        fs::write(&path, "A\n9\n").unwrap();
        assert_eq!(poll(&mut f), vec![header(&["A"]), row(&["9"])]);
    }

    #[test]
    fn rotation_finishes_the_old_file_then_reads_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.csv");
        append(&path, "A\n1\n");
        let mut f = Follower::new(path.clone(), b',', true);
        assert_eq!(poll(&mut f).len(), 3);
        append(&path, "2\n");
        fs::rename(&path, dir.path().join("log.csv.1")).unwrap();
        append(&path, "A,B\n3,4\n");
        let ev = poll(&mut f);
        if cfg!(unix) {
            assert_eq!(
                ev,
                vec![
                    row(&["2"]),
                    Event::Opened,
                    header(&["A", "B"]),
                    row(&["3", "4"])
                ]
            );
        }
    }

    #[test]
    fn removal_is_a_lost_link_and_recreation_reconnects() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.csv");
        append(&path, "A\n1\n");
        let mut f = Follower::new(path.clone(), b',', false);
        assert_eq!(poll(&mut f).len(), 3);
        fs::remove_file(&path).unwrap();
        assert!(matches!(&poll(&mut f)[..], [Event::Lost(_)]));
        append(&path, "A\n5\n");
        assert_eq!(
            poll(&mut f),
            vec![Event::Opened, header(&["A"]), row(&["5"])]
        );
    }

    #[test]
    fn header_only_and_empty_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.csv");
        append(&path, "");
        let mut f = Follower::new(path.clone(), b',', false);
        assert_eq!(poll(&mut f), vec![Event::Opened]);
        append(&path, "A,B");
        assert_eq!(poll(&mut f), vec![]);
        append(&path, "\n");
        assert_eq!(poll(&mut f), vec![header(&["A", "B"])]);
    }
}
