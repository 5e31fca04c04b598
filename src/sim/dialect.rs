//! How each simulated controller family names its data items.
//!
//! Real adapters and agents do not speak shopbridge's canonical signal ids: an Okuma OSP adapter
//! says `pexecution`, a Mazak agent `execution` with id `execution`, a Fanuc adapter `S1speed`
//! with MTConnect 1.x's `SPINDLE_SPEED` type. The simulated shop serves each machine in its
//! family's own words (taken from the reference Devices documents of those controls), so that
//! the demo and the tests go through the same profiles a real shop uses.

use std::sync::Arc;

use crate::drivers::{DataItemMeta, ItemCategory};
use crate::model::signals;

/// How a canonical value becomes the item's value on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conv {
    /// The same word or number.
    Same,
    /// A boolean as MTConnect's `ON` / `OFF`.
    OnOff,
    /// An alarm text (empty = none) as a condition: `FAULT` with the text's first word as the
    /// native code, or `NORMAL`.
    Condition,
}

/// One data item of a family: which canonical signal feeds it, and its MTConnect description.
#[derive(Clone, Copy, Debug)]
pub struct ItemDef {
    pub signal: &'static str,
    /// The data item id; it is also the SHDR key the family's adapter sends.
    pub id: &'static str,
    pub category: ItemCategory,
    pub item_type: &'static str,
    pub sub_type: Option<&'static str>,
    pub units: Option<&'static str>,
    /// The component (`Controller`, `Path`, `Rotary`…) that holds it.
    pub component: &'static str,
    pub conv: Conv,
}

const fn item(
    signal: &'static str,
    id: &'static str,
    category: ItemCategory,
    item_type: &'static str,
    sub_type: Option<&'static str>,
    component: &'static str,
) -> ItemDef {
    let conv = match category {
        ItemCategory::Condition => Conv::Condition,
        _ => Conv::Same,
    };
    ItemDef {
        signal,
        id,
        category,
        item_type,
        sub_type,
        units: None,
        component,
        conv,
    }
}

const fn with_units(mut d: ItemDef, units: &'static str) -> ItemDef {
    d.units = Some(units);
    d
}

const fn on_off(mut d: ItemDef) -> ItemDef {
    d.conv = Conv::OnOff;
    d
}

use ItemCategory::{Condition as C, Event as E, Sample as S};

/// Okuma OSP-P300 through its MTConnect adapter (keys as in the IMTS 2022 capture).
#[rustfmt::skip]
const OKUMA: &[ItemDef] = &[
    item(signals::AVAILABILITY, "avail", E, "AVAILABILITY", None, "Device"),
    item(signals::EMERGENCY_STOP, "estop", E, "EMERGENCY_STOP", None, "Controller"),
    item(signals::CONTROLLER_MODE, "pmode", E, "CONTROLLER_MODE", None, "Path"),
    item(signals::FUNCTIONAL_MODE, "fmode", E, "FUNCTIONAL_MODE", None, "Device"),
    item(signals::EXECUTION, "pexecution", E, "EXECUTION", None, "Path"),
    item(signals::PROGRAM, "pprogram", E, "PROGRAM", None, "Path"),
    item(signals::PART_COUNT, "ppartcount", E, "PART_COUNT", None, "Path"),
    item(signals::FEED_OVERRIDE, "pFovr", E, "PATH_FEEDRATE_OVERRIDE", Some("PROGRAMMED"), "Path"),
    item(signals::TOOL_NUMBER, "p1CurrentTool", E, "TOOL_NUMBER", None, "Path"),
    on_off(item(signals::SINGLE_BLOCK, "p1CMOSinglBlock", E, "SINGLE_BLOCK", None, "Path")),
    on_off(item(signals::OPTIONAL_STOP, "p1CMOOptionalStop", E, "OPTIONAL_STOP", None, "Path")),
    item(signals::BLOCK_LINE, "p1linenumber", E, "LINE_NUMBER", Some("INCREMENTAL"), "Path"),
    with_units(item(signals::SPINDLE_SPEED, "S1speed", S, "ROTARY_VELOCITY", Some("ACTUAL"), "Rotary"), "REVOLUTION/MINUTE"),
    with_units(item(signals::SPINDLE_LOAD, "S1load", S, "LOAD", None, "Rotary"), "PERCENT"),
    item(signals::DOOR, "door", E, "DOOR_STATE", None, "Door"),
    item(signals::ALARM, "system", C, "SYSTEM", None, "Controller"),
];

/// Mazak SMOOTH (ids as in the Mazak demo agent's Devices document).
#[rustfmt::skip]
const MAZAK: &[ItemDef] = &[
    item(signals::AVAILABILITY, "avail", E, "AVAILABILITY", None, "Device"),
    item(signals::EMERGENCY_STOP, "estop", E, "EMERGENCY_STOP", None, "Controller"),
    item(signals::CONTROLLER_MODE, "mode", E, "CONTROLLER_MODE", None, "Path"),
    item(signals::FUNCTIONAL_MODE, "functionalmode", E, "FUNCTIONAL_MODE", None, "Device"),
    item(signals::EXECUTION, "execution", E, "EXECUTION", None, "Path"),
    item(signals::PROGRAM, "program", E, "PROGRAM", Some("MAIN"), "Path"),
    item(signals::PART_COUNT, "PartCountAct", E, "PART_COUNT", None, "Path"),
    item(signals::FEED_OVERRIDE, "Fovr", E, "PATH_FEEDRATE_OVERRIDE", Some("PROGRAMMED"), "Path"),
    item(signals::RAPID_OVERRIDE, "Frapidovr", E, "PATH_FEEDRATE_OVERRIDE", Some("RAPID"), "Path"),
    item(signals::TOOL_NUMBER, "Tool_number", E, "TOOL_NUMBER", None, "Path"),
    item(signals::BLOCK_LINE, "linenumber", E, "LINE_NUMBER", Some("INCREMENTAL"), "Path"),
    with_units(item(signals::SPINDLE_SPEED, "Srpm", S, "ROTARY_VELOCITY", Some("ACTUAL"), "Rotary"), "REVOLUTION/MINUTE"),
    with_units(item(signals::SPINDLE_LOAD, "Sload", S, "LOAD", None, "Rotary"), "PERCENT"),
    item(signals::DOOR, "doorstate", E, "DOOR_STATE", None, "Door"),
    item(signals::ALARM, "system_cond", C, "SYSTEM", None, "Controller"),
];

/// A Fanuc control through an MTConnect adapter (names as in the Fanuc reference Devices
/// document, which still uses MTConnect 1.x's `SPINDLE_SPEED`).
#[rustfmt::skip]
const FANUC: &[ItemDef] = &[
    item(signals::AVAILABILITY, "avail", E, "AVAILABILITY", None, "Device"),
    item(signals::EMERGENCY_STOP, "estop", E, "EMERGENCY_STOP", None, "Controller"),
    item(signals::CONTROLLER_MODE, "mode", E, "CONTROLLER_MODE", None, "Controller"),
    item(signals::EXECUTION, "execution", E, "EXECUTION", None, "Controller"),
    item(signals::PROGRAM, "program", E, "PROGRAM", None, "Controller"),
    item(signals::PART_COUNT, "part_count", E, "PART_COUNT", None, "Controller"),
    item(signals::FEED_OVERRIDE, "Fovr", E, "PATH_FEEDRATE_OVERRIDE", Some("PROGRAMMED"), "Controller"),
    item(signals::BLOCK_LINE, "line", E, "LINE", None, "Controller"),
    with_units(item(signals::SPINDLE_SPEED, "S1speed", S, "SPINDLE_SPEED", Some("ACTUAL"), "Spindle"), "REVOLUTION/MINUTE"),
    with_units(item(signals::SPINDLE_LOAD, "S1load", S, "LOAD", Some("ACTUAL"), "Spindle"), "PERCENT"),
    item(signals::ALARM, "system", C, "SYSTEM", None, "Controller"),
];

/// Any MTConnect-compliant control, with the conventional ids of the MTConnect reference
/// adapters.
#[rustfmt::skip]
const GENERIC: &[ItemDef] = &[
    item(signals::AVAILABILITY, "avail", E, "AVAILABILITY", None, "Device"),
    item(signals::EMERGENCY_STOP, "estop", E, "EMERGENCY_STOP", None, "Controller"),
    item(signals::CONTROLLER_MODE, "mode", E, "CONTROLLER_MODE", None, "Path"),
    item(signals::FUNCTIONAL_MODE, "fmode", E, "FUNCTIONAL_MODE", None, "Device"),
    item(signals::EXECUTION, "exec", E, "EXECUTION", None, "Path"),
    item(signals::PROGRAM, "program", E, "PROGRAM", None, "Path"),
    item(signals::PART_COUNT, "partcount", E, "PART_COUNT", Some("ALL"), "Path"),
    item(signals::FEED_OVERRIDE, "Fovr", E, "PATH_FEEDRATE_OVERRIDE", Some("PROGRAMMED"), "Path"),
    item(signals::RAPID_OVERRIDE, "Frapid", E, "PATH_FEEDRATE_OVERRIDE", Some("RAPID"), "Path"),
    item(signals::TOOL_NUMBER, "tool", E, "TOOL_NUMBER", None, "Path"),
    item(signals::BLOCK_LINE, "line", E, "LINE_NUMBER", Some("INCREMENTAL"), "Path"),
    on_off(item(signals::SINGLE_BLOCK, "sblock", E, "SINGLE_BLOCK", None, "Path")),
    with_units(item(signals::SPINDLE_SPEED, "Srpm", S, "ROTARY_VELOCITY", Some("ACTUAL"), "Rotary"), "REVOLUTION/MINUTE"),
    with_units(item(signals::SPINDLE_LOAD, "Sload", S, "LOAD", None, "Rotary"), "PERCENT"),
    item(signals::DOOR, "door", E, "DOOR_STATE", None, "Door"),
    item(signals::ALARM, "system", C, "SYSTEM", None, "Controller"),
];

/// The items a machine with `profile` serves.
pub fn items_for(profile: &str) -> &'static [ItemDef] {
    match profile {
        "okuma-osp" => OKUMA,
        "mazak" => MAZAK,
        "fanuc-mtconnect" => FANUC,
        _ => GENERIC,
    }
}

impl ItemDef {
    /// The item as an MTConnect Devices document would describe it.
    pub fn meta(&self) -> Arc<DataItemMeta> {
        Arc::new(DataItemMeta {
            id: self.id.to_string(),
            name: Some(self.id.to_string()),
            category: Some(self.category),
            item_type: self.item_type.to_string(),
            sub_type: self.sub_type.map(str::to_string),
            units: self.units.map(str::to_string),
            component: Some(self.component.to_string()),
            component_name: None,
            representation: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_family_has_unique_ids_and_the_state_signals() {
        for p in ["okuma-osp", "mazak", "fanuc-mtconnect", "mtconnect-generic"] {
            let items = items_for(p);
            let ids: HashSet<_> = items.iter().map(|i| i.id).collect();
            assert_eq!(ids.len(), items.len(), "{p}");
            for s in [
                signals::AVAILABILITY,
                signals::EXECUTION,
                signals::CONTROLLER_MODE,
                signals::PROGRAM,
                signals::PART_COUNT,
                signals::ALARM,
            ] {
                assert!(items.iter().any(|i| i.signal == s), "{p} lacks {s}");
            }
        }
    }
}
