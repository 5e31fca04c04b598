//! The MTConnect agent documents the driver reads: a Streams document (`/current`,
//! `/sample`) through a sink, a Devices document (`/probe`), and an `MTConnectError`.
//! Every input goes through all three readers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shopbridge::drivers::mtconnect::xml::{
    Obs, StreamsParser, StreamsSink, parse_devices, parse_error, parse_streams,
};

/// Looks at everything an observation carries, as the driver's sink does.
#[derive(Default)]
struct Touch {
    devices: usize,
    observations: usize,
    text_bytes: usize,
}

impl StreamsSink for Touch {
    fn device_stream(&mut self, name: &str, uuid: Option<&str>) {
        self.devices += 1;
        self.text_bytes += name.len() + uuid.map_or(0, str::len);
    }

    fn observation(&mut self, obs: &Obs<'_>) {
        self.observations += 1;
        self.text_bytes += obs.text.len() + obs.element.len() + obs.data_item_id.len();
        let _ = obs.is_unavailable();
        let _ = obs.value();
    }
}

fuzz_target!(|data: &[u8]| {
    let mut first = Touch::default();
    let header = parse_streams(data, &mut first);
    if let Err(e) = &header {
        let _ = e.to_string();
        let _ = e.is_out_of_range();
        let _ = e.agent_codes().count();
    }
    // A parser reused after another document reads the same: its buffers carry nothing over.
    let mut reused = StreamsParser::new();
    let _ = reused.parse(b"<MTConnectStreams><Streams><DeviceStream name=\"x\"><ComponentStream><Events><Execution dataItemId=\"e\" timestamp=\"2024-01-01T00:00:00Z\" sequence=\"1\">ACTIVE", &mut Touch::default());
    let mut second = Touch::default();
    let again = reused.parse(data, &mut second);
    assert_eq!(header, again, "a reused StreamsParser reads a document as a fresh one does");
    if header.is_ok() {
        assert_eq!(first.observations, second.observations);
        assert_eq!(first.devices, second.devices);
        assert_eq!(first.text_bytes, second.text_bytes);
    }

    match parse_devices(data) {
        Ok(devices) => {
            for d in &devices {
                for item in &d.items {
                    let _ = item.shape();
                }
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let _ = parse_error(data).to_string();
});
