//! The SHDR line parser as the adapter driver drives it: bytes cut into lines at `\n`, each
//! line (lossily decoded when it is not UTF-8) pushed through one `Parser`, so that multi-line
//! assets and the time cache carry state from line to line.
//!
//! The first byte picks whether the parser knows item shapes (as it does when a Devices file
//! gave them) or reads by its heuristics alone.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shopbridge::drivers::ItemShape;
use shopbridge::drivers::shdr::{MAX_LINE, Parser, ShdrItem};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut parser = if mode & 1 == 1 {
        Parser::with_shapes([
            ("system".to_string(), ItemShape::Condition),
            ("msg".to_string(), ItemShape::Message),
            ("Xts".to_string(), ItemShape::TimeSeries),
            ("avail".to_string(), ItemShape::Value),
        ])
    } else {
        Parser::new()
    };
    let mut fed = 0u64;
    for raw in rest.split(|&b| b == b'\n') {
        if raw.len() > MAX_LINE {
            continue;
        }
        let line = String::from_utf8_lossy(raw);
        let mut items: Vec<ShdrItem<'_>> = Vec::new();
        let result = parser.push_line(&line, &mut items);
        fed += 1;
        // Every item is consumed the way the driver does: by looking at all of it.
        for item in &items {
            let _ = format!("{item:?}");
        }
        if let Err(e) = result {
            let _ = e.to_string();
        }
        assert_eq!(parser.lines(), fed, "the parser counts every line it is fed");
    }
    let was_multiline = parser.in_multiline();
    let reported = parser.reset();
    assert_eq!(was_multiline, reported.is_some(), "reset reports a half-read asset, only then");
    assert!(!parser.in_multiline());
});
