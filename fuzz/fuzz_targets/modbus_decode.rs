//! Modbus: a register map as a profile may write it (every table, data type, word and byte
//! order, bit, scale, offset and unit the profile language accepts), the read plan made from
//! it, and every item decoded from what the device answered to each request of the plan
//! (which may be fewer or more values than asked), as the driver's poll does.
//!
//! The bridge has no Modbus framing of its own (TCP and RTU frames are tokio-modbus'), so the
//! words are what a request returns.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shopbridge::drivers::modbus::map::{DataType, Register, Table, plan};
use shopbridge::model::Value;

#[derive(Arbitrary, Debug)]
struct Item {
    table: u8,
    address: u16,
    data_type: u8,
    /// A string's registers (`length`, 1-125).
    length: u8,
    word_big: bool,
    byte_big: bool,
    bit: Option<u8>,
    scale: Option<f64>,
    offset: Option<f64>,
    unit: Option<u8>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    items: Vec<Item>,
    /// What the device answers to each request of the plan, in order (missing: an empty
    /// answer).
    answers: Vec<Vec<u16>>,
}

/// The register the profile compiler would build from `it` (its checks applied the way
/// `normalize::profile` applies them).
fn register(i: usize, it: &Item) -> Register {
    let table = match it.table % 4 {
        0 => Table::Coil,
        1 => Table::DiscreteInput,
        2 => Table::Holding,
        _ => Table::Input,
    };
    let data_type = if table.is_bits() || it.bit.is_some() {
        DataType::Bool
    } else {
        match it.data_type % 8 {
            0 => DataType::Bool,
            1 => DataType::U16,
            2 => DataType::I16,
            3 => DataType::U32,
            4 => DataType::I32,
            5 => DataType::F32,
            6 => DataType::F64,
            _ => DataType::String(u16::from(it.length % 125) + 1),
        }
    };
    let mut r = Register::new(&format!("r{i}"), table, it.address, data_type);
    r.word_big = it.word_big;
    r.byte_big = it.byte_big;
    r.bit = it.bit.filter(|b| *b < 16 && !table.is_bits());
    r.scale = it.scale;
    r.offset = it.offset;
    r.unit = it.unit.filter(|u| *u <= 247);
    r
}

fuzz_target!(|input: Input| {
    let map: Vec<Register> = input
        .items
        .iter()
        .take(256)
        .enumerate()
        .map(|(i, it)| register(i, it))
        .collect();
    let blocks = plan(&map);

    // The plan reads every item exactly once, within the PDU limit.
    let mut seen = vec![0u32; map.len()];
    for b in &blocks {
        assert!(b.count >= 1 && b.count <= b.table.max_count(), "{b:?}");
        for &i in &b.items {
            let r = &map[i];
            seen[i] += 1;
            assert_eq!((r.table, r.unit), (b.table, b.unit));
            assert!(r.address >= b.start, "{r:?} starts before {b:?}");
            let end = u32::from(r.address) + u32::from(r.data_type.width());
            assert!(end <= u32::from(b.start) + u32::from(b.count), "{r:?} ends after {b:?}");
        }
    }
    assert!(seen.iter().all(|n| *n == 1), "every item in exactly one block");

    for (k, b) in blocks.iter().enumerate() {
        let mut words: Vec<u16> = input.answers.get(k).cloned().unwrap_or_default();
        if b.table.is_bits() {
            // Coils and discrete inputs come back as bits.
            for w in &mut words {
                *w &= 1;
            }
        }
        for &i in &b.items {
            let r = &map[i];
            let from = usize::from(r.address - b.start);
            let Some(w) = words.get(from..) else {
                continue;
            };
            match r.decode(w) {
                Ok(Value::Float(x)) => assert!(x.is_finite(), "{r:?} decoded {w:?} as {x}"),
                Ok(Value::Int(_) | Value::Bool(_) | Value::Text(_)) => {}
                Ok(other) => panic!("{r:?} decoded {w:?} as {other:?}"),
                Err(why) => assert!(!why.is_empty()),
            }
        }
    }
});
