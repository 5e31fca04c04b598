//! The review: classified time as people read it — per machine and shift, the daily review,
//! jobs and their projected completion. The HTTP API and the web pages serve it; it reads only
//! the journal's interval records (through [`index::IntervalIndex`]) and the live context.

pub mod daily;
pub mod index;
pub mod jobs;

pub use daily::{DailyReport, DayInput, JobStatus, ShiftWindow, daily};
pub use index::{IntervalIndex, Span};
