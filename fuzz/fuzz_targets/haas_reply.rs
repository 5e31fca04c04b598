//! The Haas MDC reply path: bytes from the control (Ethernet or RS-232) through the reply
//! `Framer`, in the chunks they arrived in, and every reply line through `parse` for the query
//! that was asked.
//!
//! Layout: byte 0 picks the query (`Q600` takes its variable from bytes 1-2), byte 3 the chunk
//! size the bytes arrive in; the rest is what the control sent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shopbridge::drivers::haas::reply::{Framer, MAX_LINE, Query, STANDARD, parse};

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let query = match usize::from(data[0]) % (STANDARD.len() + 1) {
        i if i < STANDARD.len() => STANDARD[i],
        _ => Query::Q600(u32::from(u16::from_le_bytes([data[1], data[2]]))),
    };
    let chunk = usize::from(data[3]).max(1);
    let bytes = &data[4..];

    // The bytes as one reply line, as a test or the simulator hands it over.
    check(query, &String::from_utf8_lossy(bytes));

    // The bytes as the driver sees them.
    let request = query.request();
    let mut framer = Framer::new();
    for piece in bytes.chunks(chunk) {
        framer.push(piece);
        while let Some(line) = framer.next_reply(&request) {
            assert!(line.len() <= MAX_LINE, "a reply line is never longer than MAX_LINE");
            assert!(
                !line.bytes().any(|b| b < 0x20 || b == 0x7f),
                "a reply line holds no control characters"
            );
            check(query, &line);
        }
    }
});

fn check(query: Query, line: &str) {
    match parse(query, line) {
        Ok(values) => {
            let keys = query.keys();
            for (key, value) in &values {
                assert!(keys.contains(key), "{key} is not a key of {query:?}");
                let _ = value.to_string();
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}
