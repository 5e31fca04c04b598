//! FOCAS/Ethernet: a byte stream cut into packets by the `Framer` (fed in the chunks a socket
//! might return), every packet's body read as requests and as responses, and every
//! sub-response's data through each record decoder the driver uses.
//!
//! Layout: byte 0 is the read size the stream arrives in; the rest is the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shopbridge::drivers::focas::wire::{
    ALARM_MSG_0I, ALARM_MSG_30I, Framer, HEADER_LEN, MAX_BODY, Param, StatInfo, SysInfo,
    decode_alarms, decode_program_name, decode_program_number, decode_requests, decode_responses,
    decode_scaled, encode_requests, encode_responses,
};

fuzz_target!(|data: &[u8]| {
    let Some((&size, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(size).max(1);
    let mut framer = Framer::new();
    let mut pushed = 0usize;
    let mut framed = 0usize;
    let mut skipped = 0usize;
    for piece in stream.chunks(chunk) {
        framer.push(piece);
        pushed += piece.len();
        // Bounded: every packet or error consumes bytes.
        for _ in 0..=pushed {
            match framer.next_packet() {
                Ok(Some(p)) => {
                    assert!(p.body.len() <= MAX_BODY);
                    framed += HEADER_LEN + p.body.len();
                    assert_eq!(p.encode().len(), HEADER_LEN + p.body.len());
                    body(&p.body);
                }
                Ok(None) => break,
                // The framer drops the sync of an oversize header; the driver reconnects, a
                // test reader may go on.
                Err(e) => {
                    let _ = e.to_string();
                    framed += 4;
                }
            }
        }
        skipped += framer.take_skipped();
        // Nothing is made up and nothing is lost: every byte pushed is framed, skipped or
        // still pending.
        assert_eq!(
            framed + skipped + framer.pending(),
            pushed,
            "framed {framed} + skipped {skipped} + pending {} != pushed {pushed}",
            framer.pending()
        );
    }
    // The whole stream read as one body, as the simulator's control side does too.
    body(stream);
});

fn body(b: &[u8]) {
    if let Ok(reqs) = decode_requests(b) {
        let again = decode_requests(&encode_requests(&reqs));
        assert_eq!(again.as_ref(), Ok(&reqs), "requests re-encode to themselves");
    }
    match decode_responses(b) {
        Ok(subs) => {
            let again = decode_responses(&encode_responses(&subs));
            assert_eq!(again.as_ref(), Ok(&subs), "responses re-encode to themselves");
            for s in &subs {
                record(&s.data);
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    record(b);
}

fn record(d: &[u8]) {
    let _ = decode_scaled(d);
    if let Ok(s) = StatInfo::decode(d) {
        assert_eq!(StatInfo::decode(&s.encode()), Ok(s));
    }
    if let Ok(s) = SysInfo::decode(d) {
        let _ = s.is_0i();
    }
    let _ = decode_program_number(d);
    let _ = decode_program_name(d);
    if let Ok(p) = Param::decode(d) {
        assert_eq!(Param::decode(&p.encode(1)), Ok(p));
    }
    for msg in [ALARM_MSG_0I, ALARM_MSG_30I] {
        if let Ok(alarms) = decode_alarms(d, msg) {
            for a in &alarms {
                let _ = a.code();
            }
        }
    }
}
