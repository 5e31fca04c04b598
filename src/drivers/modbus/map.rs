//! A Modbus register map (from a profile's `[[register]]` entries), the decoding of what a
//! device returns, and the read plan that coalesces neighbouring items into as few requests as
//! the protocol allows. Pure: no I/O.

use std::sync::Arc;

use crate::model::Value;

/// The four Modbus data tables, read with function codes 1, 2, 3 and 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Function code 1.
    Coil,
    /// Function code 2.
    DiscreteInput,
    /// Function code 3.
    Holding,
    /// Function code 4.
    Input,
}

impl Table {
    pub fn parse(s: &str) -> Option<Table> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "coil" | "coils" => Table::Coil,
            "discrete_input" | "discrete_inputs" | "input_status" => Table::DiscreteInput,
            "holding" | "holding_register" | "holding_registers" => Table::Holding,
            "input" | "input_register" | "input_registers" => Table::Input,
            _ => return None,
        })
    }

    /// Whether the table holds bits (coils, discrete inputs) rather than 16-bit registers.
    pub fn is_bits(self) -> bool {
        matches!(self, Table::Coil | Table::DiscreteInput)
    }

    /// The most one request may read: 2000 bits or 125 registers (the PDU limit).
    pub fn max_count(self) -> u16 {
        if self.is_bits() { 2000 } else { 125 }
    }

    pub fn function_code(self) -> u8 {
        match self {
            Table::Coil => 1,
            Table::DiscreteInput => 2,
            Table::Holding => 3,
            Table::Input => 4,
        }
    }
}

/// How the registers of one item read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    Bool,
    U16,
    I16,
    U32,
    I32,
    F32,
    F64,
    /// Text packed two characters per register; the count is the registers it spans.
    String(u16),
}

impl DataType {
    /// Parses `u16`, `f32`, `string` … (`string` takes its length from `length`).
    pub fn parse(s: &str, length: Option<u16>) -> Option<DataType> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "bool" => DataType::Bool,
            "u16" | "uint16" => DataType::U16,
            "i16" | "int16" => DataType::I16,
            "u32" | "uint32" => DataType::U32,
            "i32" | "int32" => DataType::I32,
            "f32" | "float32" | "float" => DataType::F32,
            "f64" | "float64" | "double" => DataType::F64,
            "string" => DataType::String(length.unwrap_or(1).max(1)),
            _ => return None,
        })
    }

    /// Registers (or bits) the item spans.
    pub fn width(self) -> u16 {
        match self {
            DataType::Bool | DataType::U16 | DataType::I16 => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
            DataType::F64 => 4,
            DataType::String(n) => n,
        }
    }
}

/// One item of a register map.
#[derive(Debug, Clone, PartialEq)]
pub struct Register {
    /// The source key its values are journaled under (what `[[signal]] from` matches).
    pub key: Arc<str>,
    pub table: Table,
    /// 0-based PDU address (holding register 40001 is address 0).
    pub address: u16,
    pub data_type: DataType,
    /// Which register holds the most significant word first: `true` (big, the Modbus
    /// convention) or `false` (little: low word first, as many PLCs and meters store them).
    pub word_big: bool,
    /// Whether each register's high byte comes first (`true`, the Modbus convention).
    pub byte_big: bool,
    /// For a bool read from a register (tables holding/input): the bit, 0 = least significant.
    pub bit: Option<u8>,
    pub scale: Option<f64>,
    pub offset: Option<f64>,
    /// The unit (slave) id, when not the device's.
    pub unit: Option<u8>,
}

impl Register {
    /// An item in Modbus' own conventions (big-endian words and bytes, the device's unit), no
    /// bit, scale or offset.
    pub fn new(key: &str, table: Table, address: u16, data_type: DataType) -> Register {
        Register {
            key: Arc::from(key),
            table,
            address,
            data_type,
            word_big: true,
            byte_big: true,
            bit: None,
            scale: None,
            offset: None,
            unit: None,
        }
    }

    /// Decodes this item from the words (or bits, as 0/1) that start at its address.
    pub fn decode(&self, words: &[u16]) -> Result<Value, String> {
        let need = usize::from(self.data_type.width());
        if words.len() < need {
            return Err(format!(
                "expected {need} registers, the device returned {}",
                words.len()
            ));
        }
        let w = |i: usize| {
            let x = words[i];
            if self.byte_big { x } else { x.swap_bytes() }
        };
        // The item's words, most significant first.
        let ordered = |n: usize| -> Vec<u16> {
            let mut v: Vec<u16> = (0..n).map(w).collect();
            if !self.word_big {
                v.reverse();
            }
            v
        };
        let num = |v: Vec<u16>| v.iter().fold(0u64, |acc, x| acc << 16 | u64::from(*x));
        let raw = match self.data_type {
            DataType::Bool => {
                let x = if self.table.is_bits() {
                    words[0]
                } else {
                    w(0) >> self.bit.unwrap_or(0) & 1
                };
                return Ok(Value::Bool(x & 1 == 1));
            }
            DataType::U16 => f64::from(w(0)),
            DataType::I16 => f64::from(w(0) as i16),
            DataType::U32 => num(ordered(2)) as u32 as f64,
            DataType::I32 => f64::from(num(ordered(2)) as u32 as i32),
            DataType::F32 => f64::from(f32::from_bits(num(ordered(2)) as u32)),
            DataType::F64 => f64::from_bits(num(ordered(4))),
            DataType::String(n) => {
                let mut bytes = Vec::with_capacity(usize::from(n) * 2);
                for i in 0..usize::from(n) {
                    let x = w(i);
                    bytes.push((x >> 8) as u8);
                    bytes.push(x as u8);
                }
                let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
                let text: String = bytes[..end]
                    .iter()
                    .map(|&b| {
                        if b.is_ascii_graphic() || b == b' ' {
                            b as char
                        } else {
                            '?'
                        }
                    })
                    .collect();
                return Ok(Value::text(text.trim()));
            }
        };
        if !raw.is_finite() {
            return Err(format!("the registers hold {raw}, not a number"));
        }
        let integral = matches!(
            self.data_type,
            DataType::U16 | DataType::I16 | DataType::U32 | DataType::I32
        );
        Ok(match (self.scale, self.offset) {
            (None, None) if integral => Value::Int(raw as i64),
            (s, o) => {
                // A profile may give `scale = nan` or `inf` (TOML allows both), and a large
                // scale can overflow: the record holds finite numbers only.
                let v = raw * s.unwrap_or(1.0) + o.unwrap_or(0.0);
                if !v.is_finite() {
                    return Err(format!(
                        "the registers hold {raw}, scaled and offset {v}, not a number"
                    ));
                }
                Value::Float(v)
            }
        })
    }
}

/// One request of a read plan: a run of one table on one unit, and the items in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub unit: Option<u8>,
    pub table: Table,
    pub start: u16,
    pub count: u16,
    /// Indices into the map.
    pub items: Vec<usize>,
}

/// The fewest requests that read every item: items of one unit and table whose addresses
/// touch or overlap are read together, up to the PDU limit. Items that only need to be apart
/// stay apart: a gap might hold addresses the device refuses.
pub fn plan(map: &[Register]) -> Vec<Block> {
    let mut order: Vec<usize> = (0..map.len()).collect();
    order.sort_by_key(|i| (map[*i].unit, map[*i].table, map[*i].address));
    let mut blocks: Vec<Block> = Vec::new();
    for i in order {
        let r = &map[i];
        let end = u32::from(r.address) + u32::from(r.data_type.width());
        if let Some(b) = blocks.last_mut() {
            let b_end = u32::from(b.start) + u32::from(b.count);
            let new_end = b_end.max(end);
            if b.unit == r.unit
                && b.table == r.table
                && u32::from(r.address) <= b_end
                && new_end - u32::from(b.start) <= u32::from(r.table.max_count())
            {
                b.count = (new_end - u32::from(b.start)) as u16;
                b.items.push(i);
                continue;
            }
        }
        blocks.push(Block {
            unit: r.unit,
            table: r.table,
            start: r.address,
            count: r.data_type.width(),
            items: vec![i],
        });
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(key: &str, table: Table, address: u16, t: DataType) -> Register {
        Register::new(key, table, address, t)
    }

    #[test]
    fn values_decode_with_their_word_and_byte_order() {
        let mut r = reg("x", Table::Holding, 0, DataType::U32);
        assert_eq!(r.decode(&[0x0001, 0xE240]), Ok(Value::Int(123_456)));
        r.word_big = false;
        assert_eq!(r.decode(&[0xE240, 0x0001]), Ok(Value::Int(123_456)));
        let mut f = reg("f", Table::Holding, 4, DataType::F32);
        f.word_big = false;
        assert_eq!(f.decode(&[0x0000, 0x4148]), Ok(Value::Float(12.5)));
        f.word_big = true;
        f.byte_big = false;
        assert_eq!(f.decode(&[0x4841, 0x0000]), Ok(Value::Float(12.5)));
        let d = reg("d", Table::Holding, 6, DataType::F64);
        assert_eq!(d.decode(&[0xBFF4, 0, 0, 0]), Ok(Value::Float(-1.25)));
        let i = reg("i", Table::Holding, 1, DataType::I16);
        assert_eq!(i.decode(&[65531]), Ok(Value::Int(-5)));
        let i = reg("i", Table::Input, 0, DataType::I32);
        assert_eq!(i.decode(&[0xFFFF, 0xFFFE]), Ok(Value::Int(-2)));
        let s = reg("s", Table::Holding, 10, DataType::String(8));
        assert_eq!(
            s.decode(&[0x4F31, 0x3233, 0x3400, 0, 0, 0, 0, 0]),
            Ok(Value::text("O1234"))
        );
        let mut b = reg("b", Table::Holding, 0, DataType::Bool);
        b.bit = Some(2);
        assert_eq!(b.decode(&[0b101]), Ok(Value::Bool(true)));
        b.bit = Some(1);
        assert_eq!(b.decode(&[0b101]), Ok(Value::Bool(false)));
        let mut a = reg("amps", Table::Input, 0, DataType::U16);
        a.scale = Some(50.0 / 65535.0);
        assert_eq!(a.decode(&[65535]), Ok(Value::Float(50.0)));
        let nan = reg("n", Table::Holding, 0, DataType::F32);
        assert!(nan.decode(&[0x7FC0, 0]).is_err());
        assert!(nan.decode(&[0x7FC0]).is_err());
    }

    /// Found by the `modbus_decode` fuzz target: `scale = nan` (valid TOML, accepted by the
    /// profile) made every reading NaN, and a large scale overflowed to infinity.
    #[test]
    fn a_scale_or_offset_that_makes_no_number_is_an_error() {
        let mut r = reg("r0", Table::Holding, 0, DataType::U32);
        r.word_big = false;
        r.byte_big = false;
        r.scale = Some(f64::NAN);
        r.offset = Some(1.0829723726368859e-225);
        assert!(r.decode(&[65535, 65535]).is_err());
        r.scale = Some(f64::MAX);
        r.offset = None;
        assert!(r.decode(&[65535, 65535]).is_err());
        r.scale = Some(2.0);
        r.offset = Some(f64::INFINITY);
        assert!(r.decode(&[1, 0]).is_err());
        r.offset = Some(0.5);
        r.word_big = true;
        r.byte_big = true;
        assert_eq!(r.decode(&[0, 1]), Ok(Value::Float(2.5)));
    }

    #[test]
    fn neighbours_are_read_together_up_to_the_pdu_limit() {
        let map = vec![
            reg("a", Table::Holding, 2, DataType::U32),
            reg("b", Table::Holding, 0, DataType::U16),
            reg("c", Table::Holding, 1, DataType::I16),
            reg("gap", Table::Holding, 10, DataType::U16),
            reg("di", Table::DiscreteInput, 0, DataType::Bool),
            reg("di2", Table::DiscreteInput, 1, DataType::Bool),
        ];
        let p = plan(&map);
        assert_eq!(p.len(), 3, "{p:#?}");
        assert_eq!(
            (p[0].table, p[0].start, p[0].count),
            (Table::DiscreteInput, 0, 2)
        );
        assert_eq!((p[1].table, p[1].start, p[1].count), (Table::Holding, 0, 4));
        assert_eq!(p[1].items, vec![1, 2, 0]);
        assert_eq!((p[2].start, p[2].count), (10, 1));
        let long: Vec<Register> = (0..300)
            .map(|i| reg(&format!("r{i}"), Table::Input, i, DataType::U16))
            .collect();
        let p = plan(&long);
        assert_eq!(
            p.iter().map(|b| b.count).collect::<Vec<_>>(),
            vec![125, 125, 50]
        );
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn types() -> impl Strategy<Value = DataType> {
            prop_oneof![
                Just(DataType::Bool),
                Just(DataType::U16),
                Just(DataType::I16),
                Just(DataType::U32),
                Just(DataType::I32),
                Just(DataType::F32),
                Just(DataType::F64),
                (1u16..20).prop_map(DataType::String),
            ]
        }

        proptest! {
            #[test]
            fn decoding_never_panics(t in types(), words in proptest::collection::vec(any::<u16>(), 0..24), wb in any::<bool>(), bb in any::<bool>(), bit in proptest::option::of(0u8..16)) {
                let mut r = reg("x", Table::Holding, 0, t);
                r.word_big = wb;
                r.byte_big = bb;
                r.bit = bit;
                let _ = r.decode(&words);
            }

            #[test]
            fn u32_and_i32_round_trip_in_either_order(x in any::<u32>(), wb in any::<bool>(), bb in any::<bool>()) {
                let (hi, lo) = ((x >> 16) as u16, x as u16);
                let mut words = if wb { vec![hi, lo] } else { vec![lo, hi] };
                if !bb {
                    words.iter_mut().for_each(|w| *w = w.swap_bytes());
                }
                let mut r = reg("x", Table::Holding, 0, DataType::U32);
                r.word_big = wb;
                r.byte_big = bb;
                prop_assert_eq!(r.decode(&words), Ok(Value::Int(i64::from(x))));
                r.data_type = DataType::I32;
                prop_assert_eq!(r.decode(&words), Ok(Value::Int(i64::from(x as i32))));
            }

            #[test]
            fn f32_round_trips(x in any::<f32>().prop_filter("finite", |x| x.is_finite())) {
                let b = x.to_bits();
                let r = reg("x", Table::Holding, 0, DataType::F32);
                prop_assert_eq!(r.decode(&[(b >> 16) as u16, b as u16]), Ok(Value::Float(f64::from(x))));
            }

            #[test]
            fn a_plan_reads_every_item_once_within_the_limits(items in proptest::collection::vec((0u16..400, types(), 0u8..2, any::<bool>()), 0..60)) {
                let map: Vec<Register> = items.iter().enumerate().map(|(i, (a, t, u, bits))| {
                    let table = if *bits { Table::Coil } else { Table::Holding };
                    let t = if *bits { DataType::Bool } else { *t };
                    let mut r = reg(&format!("k{i}"), table, *a, t);
                    r.unit = Some(*u);
                    r
                }).collect();
                let p = plan(&map);
                let mut seen: Vec<usize> = p.iter().flat_map(|b| b.items.clone()).collect();
                seen.sort_unstable();
                prop_assert_eq!(seen, (0..map.len()).collect::<Vec<_>>());
                for b in &p {
                    prop_assert!(b.count >= 1 && b.count <= b.table.max_count());
                    for i in &b.items {
                        let r = &map[*i];
                        prop_assert_eq!(r.table, b.table);
                        prop_assert_eq!(r.unit, b.unit);
                        prop_assert!(r.address >= b.start);
                        prop_assert!(u32::from(r.address) + u32::from(r.data_type.width()) <= u32::from(b.start) + u32::from(b.count));
                    }
                }
            }
        }
    }
}
