//! Sparkplug B commands as the edge node receives them: NCMD and DCMD payload bytes through
//! `EdgeNode::on_ncmd` / `on_dcmd` (checked against the writable metrics), and a
//! `Commands/Dispatch` value through `metrics::dispatch_list`. A payload that decodes
//! re-encodes to bytes that decode to the same payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use shopbridge::northbound::sparkplug::metrics::{WRITABLE, device_metrics, dispatch_list};
use shopbridge::northbound::sparkplug::node::{EdgeNode, NodeCommand};
use shopbridge::northbound::sparkplug::payload::Payload;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Payload::decode_bytes(data) {
        let bytes = p.encode_to_vec();
        let again = Payload::decode_bytes(&bytes);
        assert!(again.is_ok(), "a re-encoded payload decodes");
        if let Ok(again) = again {
            // Compared as bytes: a NaN metric is not equal to itself.
            assert_eq!(again.encode_to_vec(), bytes, "a payload re-encodes to the same bytes");
        }
    }

    let mut node = EdgeNode::new("shop", "bridge-1", 3, 5_000);
    node.add_device("mill-1", device_metrics(&["spindle".to_string()]));
    for c in node.on_ncmd(data, 1_000, &["mill-1"]) {
        if let NodeCommand::Rebirth(msgs) = c {
            assert!(!msgs.is_empty(), "a rebirth publishes NBIRTH at least");
        }
    }
    match node.on_dcmd("mill-1", data, &WRITABLE) {
        Ok(commands) => {
            for (name, value) in commands {
                assert!(WRITABLE.contains(&name.as_str()), "{name} is not writable");
                if name == "Commands/Dispatch" {
                    if let Err(e) = dispatch_list(&value) {
                        let _ = e.to_string();
                    }
                }
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
