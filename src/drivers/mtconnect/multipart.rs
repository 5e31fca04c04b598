//! Splits an agent's `multipart/x-mixed-replace` stream into its parts (one XML document each).
//!
//! An agent streaming `/sample?interval=…` answers once with
//! `Content-Type: multipart/x-mixed-replace;boundary=XYZ` and then writes, for ever:
//!
//! ```text
//! --XYZ\r\n
//! Content-type: text/xml\r\n
//! Content-length: 1234\r\n
//! \r\n
//! <?xml …?><MTConnectStreams …>…</MTConnectStreams>\r\n
//! ```
//!
//! HTTP chunking and TCP cut this anywhere: a part may span many reads, a read may hold many
//! parts, and a read may end inside the boundary line. So this reader is a small state machine
//! over a growing buffer: [`push`](MultipartReader::push) what arrived, then call
//! [`next_part`](MultipartReader::next_part) until it says "need more". A part's
//! `Content-length` is trusted when given; without one the part ends at the next boundary line.
//! It does no I/O (tested with bytes cut at every position).

/// Why the stream cannot be split any further.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    #[error("a part's headers are not text or have a bad Content-length: {0:?}")]
    BadHeaders(String),
    #[error("a part grew past {limit} bytes without ending")]
    TooLarge { limit: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Looking for `--boundary`.
    Boundary,
    /// Just past `--boundary`: `--` ends the stream, anything else starts headers.
    AfterBoundary,
    /// Reading the part's headers up to the empty line.
    Headers,
    /// Reading the body: a known length, or up to the next boundary line.
    Body(Option<usize>),
    /// The closing `--boundary--` was seen.
    Done,
}

/// The incremental splitter; one per HTTP response.
#[derive(Debug)]
pub struct MultipartReader {
    /// `--` followed by the boundary.
    delimiter: Vec<u8>,
    buf: Vec<u8>,
    /// Everything before `pos` is consumed.
    pos: usize,
    /// Where the next search may start (so tiny reads do not rescan the whole buffer).
    scan: usize,
    state: State,
    limit: usize,
}

/// The boundary of a `multipart/x-mixed-replace;boundary=…` content type, if it is one.
pub fn boundary_of(content_type: &str) -> Option<&str> {
    let (mime, params) = content_type.split_once(';')?;
    if !mime.trim().to_ascii_lowercase().starts_with("multipart/") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim().trim_matches('"');
        (!v.is_empty()).then_some(v)
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let last_start = hay.len() - needle.len();
    let mut i = 0;
    while i <= last_start {
        match hay[i..=last_start].iter().position(|&b| b == first) {
            None => return None,
            Some(off) => {
                let at = i + off;
                if &hay[at..at + needle.len()] == needle {
                    return Some(at);
                }
                i = at + 1;
            }
        }
    }
    None
}

impl MultipartReader {
    /// `limit` bounds one part (and the junk before a boundary) so that a broken peer cannot
    /// grow the buffer without end.
    pub fn new(boundary: &str, limit: usize) -> Self {
        let mut delimiter = b"--".to_vec();
        delimiter.extend_from_slice(boundary.as_bytes());
        Self {
            delimiter,
            buf: Vec::with_capacity(64 * 1024),
            pos: 0,
            scan: 0,
            state: State::Boundary,
            limit,
        }
    }

    /// Appends bytes as they arrived.
    pub fn push(&mut self, bytes: &[u8]) {
        // Drop what was consumed first, so the buffer holds at most one unfinished part.
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.scan -= self.pos;
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// True once the closing boundary was read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Bytes held that are not yet part of a returned part.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next complete part's body, `Ok(None)` when more bytes are needed (or the stream
    /// is done).
    pub fn next_part(&mut self) -> Result<Option<&[u8]>, MultipartError> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Boundary => {
                    let from = self.scan.max(self.pos);
                    match find(&self.buf[from..], &self.delimiter) {
                        Some(i) => {
                            self.pos = from + i + self.delimiter.len();
                            self.scan = self.pos;
                            self.state = State::AfterBoundary;
                        }
                        None => {
                            // Keep the tail that could be the start of a delimiter.
                            self.scan = self
                                .buf
                                .len()
                                .saturating_sub(self.delimiter.len() - 1)
                                .max(self.pos);
                            return self.need_more();
                        }
                    }
                }
                State::AfterBoundary => {
                    let rest = &self.buf[self.pos..];
                    if rest.len() < 2 {
                        return Ok(None);
                    }
                    if rest.starts_with(b"--") {
                        self.state = State::Done;
                        return Ok(None);
                    }
                    self.state = State::Headers;
                }
                State::Headers => {
                    let from = self.scan.max(self.pos);
                    // The headers end at the first empty line. The boundary line's own CRLF
                    // comes first, so `--XYZ\r\n\r\n` (no headers) is found too.
                    let Some(i) = find(&self.buf[from..], b"\r\n\r\n") else {
                        self.scan = self.buf.len().saturating_sub(3).max(self.pos);
                        return self.need_more();
                    };
                    let end = from + i;
                    let len = parse_length(&self.buf[self.pos..end])?;
                    self.pos = end + 4;
                    self.scan = self.pos;
                    self.state = State::Body(len);
                }
                State::Body(Some(n)) => {
                    if self.buf.len() - self.pos < n {
                        if n > self.limit {
                            return Err(MultipartError::TooLarge { limit: self.limit });
                        }
                        return Ok(None);
                    }
                    let start = self.pos;
                    self.pos += n;
                    self.scan = self.pos;
                    self.state = State::Boundary;
                    return Ok(Some(&self.buf[start..start + n]));
                }
                State::Body(None) => {
                    let from = self.scan.max(self.pos);
                    let mut needle = b"\r\n".to_vec();
                    needle.extend_from_slice(&self.delimiter);
                    let Some(i) = find(&self.buf[from..], &needle) else {
                        self.scan = self
                            .buf
                            .len()
                            .saturating_sub(needle.len() - 1)
                            .max(self.pos);
                        return self.need_more();
                    };
                    let start = self.pos;
                    let end = from + i;
                    self.pos = end;
                    self.scan = end;
                    self.state = State::Boundary;
                    return Ok(Some(&self.buf[start..end]));
                }
            }
        }
    }

    fn need_more(&self) -> Result<Option<&[u8]>, MultipartError> {
        if self.buf.len() - self.pos > self.limit {
            return Err(MultipartError::TooLarge { limit: self.limit });
        }
        Ok(None)
    }
}

/// Reads `Content-length` from a part's header block (None when absent).
fn parse_length(headers: &[u8]) -> Result<Option<usize>, MultipartError> {
    let text = std::str::from_utf8(headers)
        .map_err(|_| MultipartError::BadHeaders(String::from_utf8_lossy(headers).into_owned()))?;
    for line in text.split("\r\n") {
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                return v
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| MultipartError::BadHeaders(line.to_string()));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(body: &str, with_len: bool) -> String {
        if with_len {
            format!(
                "--XYZ\r\nContent-type: text/xml\r\nContent-length: {}\r\n\r\n{body}\r\n",
                body.len()
            )
        } else {
            format!("--XYZ\r\nContent-type: text/xml\r\n\r\n{body}\r\n")
        }
    }

    fn split_all(stream: &[u8], cut: usize) -> Vec<String> {
        let mut r = MultipartReader::new("XYZ", 1 << 20);
        let mut out = Vec::new();
        for piece in stream.chunks(cut.max(1)) {
            r.push(piece);
            while let Some(p) = r.next_part().unwrap() {
                out.push(String::from_utf8(p.to_vec()).unwrap());
            }
        }
        out
    }

    #[test]
    fn boundary_from_content_type() {
        assert_eq!(
            boundary_of("multipart/x-mixed-replace;boundary=abc123"),
            Some("abc123")
        );
        assert_eq!(
            boundary_of("multipart/x-mixed-replace; charset=x; boundary=\"q r\""),
            Some("q r")
        );
        assert_eq!(boundary_of("text/xml"), None);
        assert_eq!(boundary_of("text/xml; boundary=x"), None);
    }

    #[test]
    fn parts_split_at_every_cut() {
        // Bodies that hold the boundary's text without the line break before it, and CRLFs.
        let bodies = [
            "<a>--XY</a>",
            "<b>\r\n--XYZW is fine with a length</b>",
            "<c/>",
        ];
        for with_len in [true, false] {
            let mut stream = String::from("preamble\r\n");
            for b in bodies {
                if !with_len && b.contains("\r\n--XYZ") {
                    continue;
                }
                stream.push_str(&part(b, with_len));
            }
            stream.push_str("--XYZ--\r\n");
            let expected: Vec<_> = bodies
                .iter()
                .filter(|b| with_len || !b.contains("\r\n--XYZ"))
                .map(|b| b.to_string())
                .collect();
            for cut in 1..stream.len() {
                assert_eq!(split_all(stream.as_bytes(), cut), expected, "cut {cut}");
            }
        }
    }

    #[test]
    fn done_and_limits() {
        let mut r = MultipartReader::new("XYZ", 64);
        r.push(b"--XYZ--");
        assert_eq!(r.next_part(), Ok(None));
        assert!(r.is_done());
        let mut r = MultipartReader::new("XYZ", 64);
        r.push(b"--XYZ\r\nContent-length: 1000\r\n\r\n");
        assert_eq!(r.next_part(), Err(MultipartError::TooLarge { limit: 64 }));
        let mut r = MultipartReader::new("XYZ", 64);
        r.push(&[b'x'; 100]);
        assert_eq!(r.next_part(), Err(MultipartError::TooLarge { limit: 64 }));
        let mut r = MultipartReader::new("XYZ", 64);
        r.push(b"--XYZ\r\nContent-length: lots\r\n\r\n");
        assert!(matches!(r.next_part(), Err(MultipartError::BadHeaders(_))));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            cut in 1usize..20,
        ) {
            let mut r = MultipartReader::new("XYZ", 128);
            for piece in bytes.chunks(cut) {
                r.push(piece);
                while let Ok(Some(_)) = r.next_part() {}
            }
        }
    }
}
