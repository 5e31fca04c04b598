//! The canonical model: pure types, no I/O, no async (DESIGN section 2).
//!
//! Everything that crosses a layer boundary is one of these types: the raw observations a driver
//! emits, the canonical machine state a profile derives, and the [`Record`]s the journal keeps.

mod context;
mod ids;
mod openapi;
mod record;
mod state;
mod taxonomy;
mod time;
mod value;

pub use context::{
    Attribution, CategorySource, ContextRecord, DispatchRecord, DispatchedOperation,
    OperationEvent, OperationRecord, OperationRef, PartCounts, QualityEvent, QualityRecord,
    Revision, ScheduleFeedback,
};
pub use ids::{IdError, MachineId, SignalId};
pub use record::{
    ActiveCondition, ActiveConditions, AssetAction, AssetRecord, Command, CommandOrigin,
    CommandRecord, ConditionLevel, ConditionRecord, JobContext, LinkEvent, LinkStatus, Observation,
    Record, RecordKind, StateChange, StateInterval,
};
pub use state::{
    Availability, ControllerMode, EmergencyStop, Execution, FunctionalMode, MachineState,
    ParseStateError, ShopState, TimedState,
};
pub use taxonomy::{LossCategory, Taxonomy, TimeCategory};
pub use time::{Timestamp, Timestamps};
pub use value::{Quality, QualityReason, Value};

/// Canonical signal ids. Profiles map a brand's keys onto these; the simulator and (until the
/// profiles issue) the pass-through normalizer emit them directly.
pub mod signals {
    pub const AVAILABILITY: &str = "availability";
    pub const EXECUTION: &str = "execution";
    pub const CONTROLLER_MODE: &str = "controller_mode";
    pub const FUNCTIONAL_MODE: &str = "functional_mode";
    pub const PROGRAM: &str = "program";
    pub const PART_COUNT: &str = "part_count";
    pub const SPINDLE_SPEED: &str = "spindle_speed";
    pub const SPINDLE_LOAD: &str = "spindle_load";
    pub const FEED_OVERRIDE: &str = "feed_override";
    pub const RAPID_OVERRIDE: &str = "rapid_override";
    pub const TOOL_NUMBER: &str = "tool_number";
    pub const SINGLE_BLOCK: &str = "single_block";
    pub const OPTIONAL_STOP: &str = "optional_stop";
    pub const ALARM: &str = "alarm";
    pub const DOOR: &str = "door";
    pub const EMERGENCY_STOP: &str = "emergency_stop";
    pub const BLOCK_LINE: &str = "line";

    /// Every canonical signal id, in a stable order.
    pub const ALL: &[&str] = &[
        AVAILABILITY,
        EXECUTION,
        CONTROLLER_MODE,
        FUNCTIONAL_MODE,
        PROGRAM,
        PART_COUNT,
        SPINDLE_SPEED,
        SPINDLE_LOAD,
        FEED_OVERRIDE,
        RAPID_OVERRIDE,
        TOOL_NUMBER,
        SINGLE_BLOCK,
        OPTIONAL_STOP,
        ALARM,
        DOOR,
        EMERGENCY_STOP,
        BLOCK_LINE,
    ];
}
