//! The on-disk record encoding, version 1.
//!
//! Records are stored in blocks (one redb value per block, keyed by the block's first sequence
//! number). A block is:
//!
//! ```text
//! u8      format version: 1 = plain body, 2 = LZ4-compressed body
//! varint  record count
//! zigzag  base time (µs since epoch): the first record's received/aligned reference
//! v1:     record*, each starting with a one-byte tag
//! v2:     varint body length, then the LZ4 block of record*
//! ```
//!
//! The writer compresses a body when that saves at least a tenth (it does for state changes and
//! intervals, whose JSON repeats the same keys).
//!
//! Tag 1, an observation — the hot path, hand-packed (about 8–20 bytes):
//!
//! ```text
//! varint machine dictionary id, varint signal dictionary id,
//! u8     flags: bits 0-2 value type (0 unavailable, 1 false, 2 true, 3 int, 4 f64, 5 text,
//!        6 f32-exact float, 7 float that is a whole number of thousandths), bit 3 has source
//!        time, bit 4 has quality byte
//! zigzag received - previous record's received (previous = base time for the first)
//! zigzag aligned - received
//! zigzag source - aligned                      (if bit 3)
//! u8     quality: high nibble 1 uncertain / 2 bad, low nibble reason code (if bit 4)
//! value  int: zigzag varint; f64: 8 bytes LE; f32: 4 bytes LE; thousandths: zigzag varint of
//!        value × 1000 (45.3 → 45300, 3 bytes instead of 8); text: varint length + UTF-8
//! ```
//!
//! Tag 2, any other kind: varint length + the record kind as JSON. Rare kinds (state changes,
//! links, intervals, and every kind later issues add) are self-describing, so new fields and new
//! kinds need no format change; a reader that meets a kind it does not know reports it as an
//! error for that record's block rather than guessing.
//!
//! A new format version gets a new version byte; readers keep decoding every older version.

use std::sync::Arc;

use crate::model::{
    MachineId, Observation, Quality, QualityReason, Record, RecordKind, SignalId, Timestamp,
    Timestamps, Value,
};

/// The newest block format this build writes and reads (it reads every older one too).
pub const FORMAT_VERSION: u8 = 2;
/// Version 1: the body follows the header as is.
const V1_PLAIN: u8 = 1;
/// Version 2: the body is LZ4-compressed (after the header: varint body length, LZ4 block).
const V2_LZ4: u8 = 2;
/// A decompressed body is never larger than this (guards against a damaged length).
const MAX_BODY: usize = 64 << 20;

const TAG_OBSERVATION: u8 = 1;
const TAG_JSON: u8 = 2;

const V_UNAVAILABLE: u8 = 0;
const V_FALSE: u8 = 1;
const V_TRUE: u8 = 2;
const V_INT: u8 = 3;
const V_F64: u8 = 4;
const V_TEXT: u8 = 5;
const V_F32: u8 = 6;
const V_MILLI: u8 = 7;
const F_SOURCE: u8 = 1 << 3;
const F_QUALITY: u8 = 1 << 4;

/// A stored block could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error(
        "block format version {0} is newer than this shopbridge understands (up to {FORMAT_VERSION})"
    )]
    UnknownVersion(u8),
    #[error("block ends early at byte {0}")]
    Truncated(usize),
    #[error("unknown record tag {tag} at byte {at}")]
    UnknownTag { tag: u8, at: usize },
    #[error("dictionary id {0} is not in the journal's dictionary")]
    UnknownDictId(u32),
    #[error("record at byte {at} is not valid: {reason}")]
    Invalid { at: usize, reason: String },
}

/// Maps machine and signal ids to small integers and back.
pub trait Dictionary {
    fn machine(&self, id: u32) -> Option<&MachineId>;
    fn signal(&self, id: u32) -> Option<&SignalId>;
}

/// Assigns dictionary ids while encoding (the writer's side).
pub trait Interner {
    fn machine_id(&mut self, m: &MachineId) -> u32;
    fn signal_id(&mut self, s: &SignalId) -> u32;
}

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub fn put_zigzag(out: &mut Vec<u8>, v: i64) {
    put_varint(out, zigzag(v));
}

/// A stored block: the header for `count` records with time reference `base`, then the body,
/// LZ4-compressed (version 2) when that saves at least a tenth, else as is (version 1).
pub fn finish_block(count: u64, base: i64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + body.len());
    out.push(V1_PLAIN);
    put_varint(&mut out, count);
    put_zigzag(&mut out, base);
    if body.len() >= 128 {
        let packed = lz4_flex::block::compress(body);
        if packed.len() + 4 < body.len() - body.len() / 10 {
            out[0] = V2_LZ4;
            put_varint(&mut out, body.len() as u64);
            out.extend_from_slice(&packed);
            return out;
        }
    }
    out.extend_from_slice(body);
    out
}

/// Encodes records into one block. Returns the encoded bytes.
pub fn encode_block<'a, I>(records: I, count: usize, interner: &mut dyn Interner) -> Vec<u8>
where
    I: IntoIterator<Item = &'a RecordKind>,
{
    let mut iter = records.into_iter().peekable();
    let base = iter.peek().map(|r| r.time().as_micros()).unwrap_or(0);
    let mut body = Vec::with_capacity(count * 16);
    let mut prev_received = base;
    encode_records(iter, &mut prev_received, interner, &mut body);
    finish_block(count as u64, base, &body)
}

/// Encodes records as a block's body (after its header), continuing the received-time deltas
/// from `prev_received`, so that a body can be extended by later records.
pub fn encode_records<'a, I>(
    records: I,
    prev_received: &mut i64,
    interner: &mut dyn Interner,
    out: &mut Vec<u8>,
) where
    I: IntoIterator<Item = &'a RecordKind>,
{
    for r in records {
        match r {
            RecordKind::Observation(o) => {
                out.push(TAG_OBSERVATION);
                put_varint(out, u64::from(interner.machine_id(&o.machine)));
                put_varint(out, u64::from(interner.signal_id(&o.signal)));
                let mut flags = value_type(&o.value);
                if o.time.source.is_some() {
                    flags |= F_SOURCE;
                }
                if !o.quality.is_good() {
                    flags |= F_QUALITY;
                }
                out.push(flags);
                let received = o.time.received.as_micros();
                put_zigzag(out, received.wrapping_sub(*prev_received));
                *prev_received = received;
                let aligned = o.time.aligned.as_micros();
                put_zigzag(out, aligned.wrapping_sub(received));
                if let Some(s) = o.time.source {
                    put_zigzag(out, s.as_micros().wrapping_sub(aligned));
                }
                if !o.quality.is_good() {
                    out.push(quality_byte(o.quality));
                }
                put_value(out, &o.value);
            }
            other => {
                out.push(TAG_JSON);
                // Serializing our own model types to JSON cannot fail (no maps with non-string
                // keys, no failing Serialize impls); an empty payload would surface on decode.
                let json = serde_json::to_vec(other).unwrap_or_default();
                put_varint(out, json.len() as u64);
                out.extend_from_slice(&json);
            }
        }
    }
}

/// How a float is stored: the shortest form that gives back exactly the same bits.
enum FloatForm {
    F32,
    Milli(i64),
    F64,
}

fn varint_len(v: u64) -> usize {
    (64 - v.leading_zeros() as usize).div_ceil(7).max(1)
}

fn float_form(f: f64) -> FloatForm {
    let f32_exact = (f as f32) as f64 == f || f.is_nan();
    let milli = (f * 1000.0).round();
    if milli.is_finite() && milli.abs() < 9.0e15 {
        let k = milli as i64;
        if ((k as f64) / 1000.0).to_bits() == f.to_bits()
            && (!f32_exact || varint_len(zigzag(k)) < 4)
        {
            return FloatForm::Milli(k);
        }
    }
    if f32_exact {
        FloatForm::F32
    } else {
        FloatForm::F64
    }
}

fn value_type(v: &Value) -> u8 {
    match v {
        Value::Unavailable => V_UNAVAILABLE,
        Value::Bool(false) => V_FALSE,
        Value::Bool(true) => V_TRUE,
        Value::Int(_) => V_INT,
        Value::Float(f) => match float_form(*f) {
            FloatForm::F32 => V_F32,
            FloatForm::Milli(_) => V_MILLI,
            FloatForm::F64 => V_F64,
        },
        Value::Text(_) => V_TEXT,
    }
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Unavailable | Value::Bool(_) => {}
        Value::Int(i) => put_zigzag(out, *i),
        Value::Float(f) => match float_form(*f) {
            FloatForm::F32 => out.extend_from_slice(&(*f as f32).to_le_bytes()),
            FloatForm::Milli(k) => put_zigzag(out, k),
            FloatForm::F64 => out.extend_from_slice(&f.to_le_bytes()),
        },
        Value::Text(s) => {
            put_varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
    }
}

fn quality_byte(q: Quality) -> u8 {
    match q {
        Quality::Good => 0,
        Quality::Uncertain(r) => 0x10 | r.code(),
        Quality::Bad(r) => 0x20 | r.code(),
    }
}

fn quality_from_byte(b: u8) -> Option<Quality> {
    let reason = QualityReason::from_code(b & 0x0f)?;
    match b >> 4 {
        1 => Some(Quality::Uncertain(reason)),
        2 => Some(Quality::Bad(reason)),
        _ => None,
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Result<u8, CodecError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or(CodecError::Truncated(self.pos))?;
        self.pos += 1;
        Ok(b)
    }
    fn varint(&mut self) -> Result<u64, CodecError> {
        let mut v: u64 = 0;
        let mut shift = 0u32;
        loop {
            let b = self.u8()?;
            if shift >= 64 {
                return Err(CodecError::Invalid {
                    at: self.pos,
                    reason: "varint longer than 10 bytes".into(),
                });
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
            shift += 7;
        }
    }
    fn zigzag(&mut self) -> Result<i64, CodecError> {
        self.varint().map(unzigzag)
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(CodecError::Truncated(self.pos))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(CodecError::Truncated(self.pos))?;
        self.pos = end;
        Ok(s)
    }
    fn len(&mut self) -> Result<usize, CodecError> {
        let n = self.varint()?;
        usize::try_from(n).map_err(|_| CodecError::Truncated(self.pos))
    }
}

/// A block's record count, time reference and (decompressed) body.
fn split_block(buf: &[u8]) -> Result<(u64, i64, std::borrow::Cow<'_, [u8]>), CodecError> {
    let mut r = Reader { buf, pos: 0 };
    let v = r.u8()?;
    if v != V1_PLAIN && v != V2_LZ4 {
        return Err(CodecError::UnknownVersion(v));
    }
    let count = r.varint()?;
    let base = r.zigzag()?;
    if v == V1_PLAIN {
        return Ok((count, base, std::borrow::Cow::Borrowed(&buf[r.pos..])));
    }
    let at = r.pos;
    let len = r.len()?;
    if len > MAX_BODY {
        return Err(CodecError::Invalid {
            at,
            reason: format!("compressed body claims {len} bytes"),
        });
    }
    let body =
        lz4_flex::block::decompress(&buf[r.pos..], len).map_err(|e| CodecError::Invalid {
            at,
            reason: format!("LZ4 body: {e}"),
        })?;
    if body.len() != len {
        return Err(CodecError::Invalid {
            at,
            reason: format!("LZ4 body is {} bytes, header says {len}", body.len()),
        });
    }
    Ok((count, base, std::borrow::Cow::Owned(body)))
}

/// Decodes a block whose first record has sequence `first_seq`, keeping records with
/// `seq > after` (pass 0 for all).
pub fn decode_block(
    buf: &[u8],
    first_seq: u64,
    after: u64,
    dict: &dyn Dictionary,
    out: &mut Vec<Record>,
    max: usize,
) -> Result<(), CodecError> {
    let (count, base, body) = split_block(buf)?;
    let mut r = Reader { buf: &body, pos: 0 };
    let mut prev_received = base;
    for i in 0..count {
        if out.len() >= max {
            return Ok(());
        }
        let seq = first_seq + i;
        let at = r.pos;
        let tag = r.u8()?;
        let kind = match tag {
            TAG_OBSERVATION => {
                let m =
                    u32::try_from(r.varint()?).map_err(|_| CodecError::UnknownDictId(u32::MAX))?;
                let s =
                    u32::try_from(r.varint()?).map_err(|_| CodecError::UnknownDictId(u32::MAX))?;
                let flags = r.u8()?;
                let received = prev_received.wrapping_add(r.zigzag()?);
                prev_received = received;
                let aligned = received.wrapping_add(r.zigzag()?);
                let source = if flags & F_SOURCE != 0 {
                    Some(Timestamp::from_micros(aligned.wrapping_add(r.zigzag()?)))
                } else {
                    None
                };
                let quality = if flags & F_QUALITY != 0 {
                    let b = r.u8()?;
                    quality_from_byte(b).ok_or_else(|| CodecError::Invalid {
                        at,
                        reason: format!("quality byte {b:#x}"),
                    })?
                } else {
                    Quality::Good
                };
                let value = match flags & 0x07 {
                    V_UNAVAILABLE => Value::Unavailable,
                    V_FALSE => Value::Bool(false),
                    V_TRUE => Value::Bool(true),
                    V_INT => Value::Int(r.zigzag()?),
                    V_F64 => {
                        let b = r.bytes(8)?;
                        let mut a = [0u8; 8];
                        a.copy_from_slice(b);
                        Value::Float(f64::from_le_bytes(a))
                    }
                    V_F32 => {
                        let b = r.bytes(4)?;
                        let mut a = [0u8; 4];
                        a.copy_from_slice(b);
                        Value::Float(f64::from(f32::from_le_bytes(a)))
                    }
                    V_MILLI => Value::Float(r.zigzag()? as f64 / 1000.0),
                    V_TEXT => {
                        let n = r.len()?;
                        let b = r.bytes(n)?;
                        let s = std::str::from_utf8(b).map_err(|e| CodecError::Invalid {
                            at,
                            reason: e.to_string(),
                        })?;
                        Value::Text(Arc::from(s))
                    }
                    t => {
                        return Err(CodecError::Invalid {
                            at,
                            reason: format!("value type {t}"),
                        });
                    }
                };
                if seq <= after {
                    continue;
                }
                let machine = dict.machine(m).ok_or(CodecError::UnknownDictId(m))?.clone();
                let signal = dict.signal(s).ok_or(CodecError::UnknownDictId(s))?.clone();
                RecordKind::Observation(Observation {
                    machine,
                    signal,
                    value,
                    quality,
                    time: Timestamps {
                        source,
                        received: Timestamp::from_micros(received),
                        aligned: Timestamp::from_micros(aligned),
                    },
                })
            }
            TAG_JSON => {
                let n = r.len()?;
                let b = r.bytes(n)?;
                if seq <= after {
                    continue;
                }
                serde_json::from_slice(b).map_err(|e| CodecError::Invalid {
                    at,
                    reason: e.to_string(),
                })?
            }
            tag => return Err(CodecError::UnknownTag { tag, at }),
        };
        out.push(Record { seq, kind });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::model::{LinkEvent, LinkStatus};

    #[derive(Default)]
    pub struct MapDict {
        machines: Vec<MachineId>,
        signals: Vec<SignalId>,
        mi: HashMap<MachineId, u32>,
        si: HashMap<SignalId, u32>,
    }
    impl Interner for MapDict {
        fn machine_id(&mut self, m: &MachineId) -> u32 {
            if let Some(i) = self.mi.get(m) {
                return *i;
            }
            self.machines.push(m.clone());
            let i = (self.machines.len() - 1) as u32;
            self.mi.insert(m.clone(), i);
            i
        }
        fn signal_id(&mut self, s: &SignalId) -> u32 {
            if let Some(i) = self.si.get(s) {
                return *i;
            }
            self.signals.push(s.clone());
            let i = (self.signals.len() - 1) as u32;
            self.si.insert(s.clone(), i);
            i
        }
    }
    impl Dictionary for MapDict {
        fn machine(&self, id: u32) -> Option<&MachineId> {
            self.machines.get(id as usize)
        }
        fn signal(&self, id: u32) -> Option<&SignalId> {
            self.signals.get(id as usize)
        }
    }

    pub fn obs(m: &str, s: &str, v: Value, t: i64) -> RecordKind {
        RecordKind::Observation(Observation {
            machine: MachineId::new(m).unwrap(),
            signal: SignalId::new(s),
            value: v,
            quality: Quality::Good,
            time: Timestamps {
                source: Some(Timestamp::from_micros(t - 1500)),
                received: Timestamp::from_micros(t),
                aligned: Timestamp::from_micros(t - 200),
            },
        })
    }

    #[test]
    fn block_round_trips_every_value_shape() {
        let t = 1_764_000_000_000_000;
        let mut recs = vec![
            obs("m1", "execution", Value::text("ACTIVE"), t),
            obs("m1", "spindle_speed", Value::Float(1234.5), t + 10),
            obs("m2", "spindle_load", Value::Float(0.1), t + 5),
            obs("m2", "spindle_load", Value::Float(45.3), t + 5),
            obs("m2", "x", Value::Float(-0.0), t + 5),
            obs("m2", "x", Value::Float(1.0e300), t + 5),
            obs("m2", "x", Value::Float(std::f64::consts::PI), t + 5),
            obs("m2", "x", Value::Float(-123456.789), t + 5),
            obs("m2", "part_count", Value::Int(-42), t + 5),
            obs("m2", "door", Value::Bool(true), t + 5),
            obs("m2", "door", Value::Bool(false), t + 5),
            obs("m2", "door", Value::Unavailable, t + 5),
            RecordKind::Link(LinkEvent {
                machine: MachineId::new("m2").unwrap(),
                at: Timestamp::from_micros(t),
                status: LinkStatus::Lost,
                detail: Some("refused".into()),
                missed: None,
            }),
        ];
        if let RecordKind::Observation(o) = &mut recs[1] {
            o.quality = Quality::Bad(QualityReason::LinkLost);
            o.time.source = None;
        }
        let mut d = MapDict::default();
        let block = encode_block(&recs, recs.len(), &mut d);
        let mut out = Vec::new();
        decode_block(&block, 100, 0, &d, &mut out, usize::MAX).unwrap();
        assert_eq!(out.len(), recs.len());
        for (i, (a, b)) in out.iter().zip(&recs).enumerate() {
            assert_eq!(a.seq, 100 + i as u64);
            assert_eq!(&a.kind, b);
        }
        let mut tail = Vec::new();
        decode_block(&block, 100, 105, &d, &mut tail, 2).unwrap();
        assert_eq!(
            tail.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![106, 107]
        );
    }

    #[test]
    fn plain_and_compressed_blocks_both_decode() {
        let t = 1_764_000_000_000_000;
        let mut d = MapDict::default();
        let small = vec![obs("m1", "x", Value::Int(1), t)];
        let block = encode_block(&small, 1, &mut d);
        assert_eq!(block[0], V1_PLAIN, "too small to be worth compressing");
        let many: Vec<_> = (0..200)
            .map(|i| obs("m1", "execution", Value::text("ACTIVE"), t + i))
            .collect();
        let block = encode_block(&many, many.len(), &mut d);
        assert_eq!(block[0], V2_LZ4, "repetitive records compress");
        let mut out = Vec::new();
        decode_block(&block, 1, 0, &d, &mut out, usize::MAX).unwrap();
        assert_eq!(out.iter().map(|r| r.kind.clone()).collect::<Vec<_>>(), many);
        // A damaged length is an error, not an allocation of whatever it claims.
        let mut bad = block.clone();
        bad.truncate(bad.len() - 3);
        assert!(decode_block(&bad, 1, 0, &d, &mut Vec::new(), usize::MAX).is_err());
    }

    #[test]
    fn nan_stays_nan() {
        let recs = vec![obs("m1", "x", Value::Float(f64::NAN), 1)];
        let mut d = MapDict::default();
        let block = encode_block(&recs, 1, &mut d);
        let mut out = Vec::new();
        decode_block(&block, 1, 0, &d, &mut out, 10).unwrap();
        match &out[0].kind {
            RecordKind::Observation(o) => assert!(matches!(o.value, Value::Float(f) if f.is_nan())),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn observations_pack_small() {
        let t = 1_764_000_000_000_000;
        let recs: Vec<_> = (0..1000)
            .map(|i| {
                obs(
                    "machine-1",
                    "spindle_speed",
                    Value::Float(1000.0 + i as f64 * 0.37),
                    t + i * 100,
                )
            })
            .collect();
        let mut d = MapDict::default();
        let block = encode_block(&recs, recs.len(), &mut d);
        let per = block.len() as f64 / 1000.0;
        assert!(per < 20.0, "{per} bytes per observation");
    }

    proptest::proptest! {
        /// Whatever bytes a damaged disk hands back, decoding returns (an error), never panics.
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let mut d = MapDict::default();
            d.machine_id(&MachineId::new("m1").unwrap());
            d.signal_id(&SignalId::new("s1"));
            let mut out = Vec::new();
            let _ = decode_block(&bytes, 1, 0, &d, &mut out, 1000);
            for version in [V1_PLAIN, V2_LZ4] {
                let mut v = vec![version];
                v.extend_from_slice(&bytes);
                let _ = decode_block(&v, 1, 0, &d, &mut out, 1000);
            }
        }
    }

    #[test]
    fn truncated_and_garbage_blocks_are_errors_not_panics() {
        let t = 1_764_000_000_000_000;
        let recs = vec![obs("m1", "program", Value::text("O1234"), t)];
        let mut d = MapDict::default();
        let block = encode_block(&recs, 1, &mut d);
        for cut in 0..block.len() {
            let mut out = Vec::new();
            assert!(decode_block(&block[..cut], 1, 0, &d, &mut out, usize::MAX).is_err());
        }
        let mut out = Vec::new();
        assert_eq!(
            decode_block(&[9, 1, 0], 1, 0, &d, &mut out, 10),
            Err(CodecError::UnknownVersion(9))
        );
    }
}
