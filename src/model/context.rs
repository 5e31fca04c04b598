//! Job-shop context as records: dispatch lists from the ERP, holds and inspections from the
//! QMS, the operations the context layer tracks, and how a span of time got its category.
//!
//! Inputs (dispatch lists, quality events, operator commands) are journal records of their
//! own, naming who sent them; the context layer's outputs (classified intervals, operation
//! events, the live context) are derived from the journal and can be derived again under new
//! rules (`shopbridge reclassify`).

use serde::{Deserialize, Serialize};

use super::{CommandOrigin, JobContext, MachineId, TimeCategory, Timestamp};

/// One operation of a dispatch list, as the ERP sends it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DispatchedOperation {
    pub job: String,
    pub operation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_revision: Option<String>,
    /// The NC program(s) that make it: loading one of them starts the operation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub programs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<u64>,
    /// Planned setup time, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup_seconds: Option<f64>,
    /// Planned cycle time per part, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycle_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_order: Option<String>,
    /// The operation of the same job that comes before this one (routing), when known: while
    /// it is incomplete, a machine waiting for this one is starved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// A machine's dispatch list: the ordered operations planned for it. A new list replaces the
/// previous one as a whole.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DispatchRecord {
    pub machine: MachineId,
    pub at: Timestamp,
    pub origin: CommandOrigin,
    pub operations: Vec<DispatchedOperation>,
}

/// What the QMS said.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum QualityEvent {
    /// A quality hold: on a job (and operation) wherever it runs, or on the machine.
    HoldOpened {
        hold: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        job: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        operation: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    HoldReleased {
        hold: String,
    },
    /// An inspection (first article, in-process) was requested: the machine waits for it.
    InspectionRequested {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        job: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        operation: Option<String>,
    },
    /// The inspection was decided.
    InspectionDispositioned {
        accepted: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
}

/// A quality event as it concerns one machine (a job hold is written for every machine).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QualityRecord {
    pub machine: MachineId,
    pub at: Timestamp,
    pub origin: CommandOrigin,
    #[serde(flatten)]
    pub event: QualityEvent,
}

/// Who decided a span's category.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CategorySource {
    /// A classification rule, from the machine's signals and context.
    Rule,
    /// An operator's reason.
    Operator,
    /// A QMS hold or inspection.
    Qms,
    /// The shift calendar (planned time).
    Planner,
}

impl CategorySource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rule => "rule",
            Self::Operator => "operator",
            Self::Qms => "qms",
            Self::Planner => "planner",
        }
    }
}

/// How a span's category was decided.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attribution {
    pub source: CategorySource,
    /// The rule's name (for rule, QMS and planner sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// 0–1: how sure the source is (an operator's word is 1).
    pub confidence: f32,
    /// The person, for an operator's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The journal record that decided it (an operator's command, a QMS event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<u64>,
}

/// An interval emitted again with a different category or context: the reconciliation
/// ledger. The newest revision of an interval (same machine and start) is the one that counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Revision {
    /// 1 for the first revision, then 2, 3 …
    pub n: u32,
    /// Why: `operator reason`, `operation confirmed`, `operation corrected`, `reclassified`.
    pub why: String,
    /// The category and attribution it had before.
    pub previous_category: Option<TimeCategory>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_source: Option<CategorySource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_job: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_operation: Option<String>,
    /// When the change was made (bridge time) and by whom.
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// Parts of an operation, counted from the machine's counter and corrected by operator or QMS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PartCounts {
    /// Parts the counter saw since the operation started (× parts per cycle).
    pub made: u64,
    pub scrap: u64,
    pub rework: u64,
}

impl PartCounts {
    pub fn good(&self) -> u64 {
        self.made.saturating_sub(self.scrap)
    }
}

/// How a running operation is doing against its plan.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScheduleFeedback {
    /// Robust median of the recent cycle times, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycle_seconds: Option<f64>,
    pub parts: PartCounts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_completion: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<Timestamp>,
    /// The estimated completion is after the due date.
    pub at_risk: bool,
}

/// What happened to an operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum OperationEvent {
    /// Started: `by` is `program` (its program was loaded), `dispatch` (its list arrived with
    /// its program already loaded), `confirmation` (someone said so) or `resumed` (the bridge
    /// found it running).
    Started {
        by: String,
    },
    /// Its program matched more than one dispatched operation; this one is attributed
    /// provisionally until someone confirms.
    Ambiguous {
        candidates: Vec<OperationRef>,
    },
    /// Someone confirmed which operation is in process.
    Confirmed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// Left before its quantity was made (another operation started, or a long stop).
    Paused,
    Resumed,
    /// Its quantity was made.
    Completed,
}

/// A job and operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OperationRef {
    pub job: String,
    pub operation: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OperationRecord {
    pub machine: MachineId,
    pub at: Timestamp,
    pub job: String,
    pub operation: String,
    #[serde(flatten)]
    pub event: OperationEvent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<ScheduleFeedback>,
}

/// A machine's current context, as the context layer sees it now: written when anything in
/// it changes, for the live faces (REST, OPC UA, Sparkplug).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ContextRecord {
    pub machine: MachineId,
    pub at: Timestamp,
    /// The journal record it is derived through: commands after it are not in it yet.
    #[serde(default)]
    pub through: u64,
    #[serde(default, skip_serializing_if = "JobContext::is_empty")]
    pub context: JobContext,
    /// The current span's category (final once the span closes: some rules need its length).
    pub category: TimeCategory,
    pub attribution: Attribution,
    /// When the current span began.
    pub since: Timestamp,
    /// The operation is attributed provisionally (its program matched several).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub provisional: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<OperationRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<ScheduleFeedback>,
}
