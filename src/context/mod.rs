//! Context and rules: job / operation / operator / shift, and the classification of every stop
//! into the downtime taxonomy.
//!
//! This first slice knows no dispatch lists, shifts or operators yet (the context issue brings
//! them). It classifies only what the machine state alone proves, and leaves the rest
//! unclassified (`None`) rather than guessing:
//!
//! - RUN (execution ACTIVE) → production;
//! - DOWN with a fault alarm active → machine fault;
//! - everything else → unclassified until context and operator reasons arrive.

use crate::model::{LossCategory, MachineState, RecordKind, ShopState, TimeCategory};

/// Classifies every closed interval among `records` that has no category yet.
pub fn classify(records: &mut [RecordKind]) {
    for r in records {
        if let RecordKind::Interval(i) = r {
            if i.category.is_none() {
                i.category = classify_default(&i.state);
            }
        }
    }
}

/// The classification that needs no context.
pub fn classify_default(state: &MachineState) -> Option<TimeCategory> {
    match state.shop_state() {
        ShopState::Run => Some(TimeCategory::Production),
        ShopState::Down if state.alarm => Some(TimeCategory::Loss(LossCategory::MACHINE_FAULT)),
        ShopState::Down | ShopState::Idle | ShopState::Off => None,
    }
}

pub mod commands;
