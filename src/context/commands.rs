//! Commands from the north (OPC UA methods, Sparkplug DCMD, REST) and the ERP and QMS inputs
//! (dispatch lists, holds, inspections) enter here.
//!
//! Every command is checked against the configuration (the machine exists, a stop reason is a
//! category of the shop's taxonomy, identifiers are short printable text), then written to the
//! journal as a [`CommandRecord`] naming the channel and the authenticated user. The caller
//! learns the record's sequence number only once the record is durable, so an operator who
//! saw "done" can rely on it surviving a power cut.

use std::collections::HashSet;

use thiserror::Error;

use crate::clock::Clock;
use crate::journal::{Journal, JournalError};
use crate::model::{
    Command, CommandOrigin, CommandRecord, LossCategory, MachineId, RecordKind, Taxonomy,
};

/// Why a command was refused.
#[derive(Debug, Error)]
pub enum CommandError {
    #[error("no machine {0:?} is configured")]
    UnknownMachine(String),
    /// An argument is wrong; `argument` names it as the caller knows it.
    #[error("{argument}: {why}")]
    BadArgument { argument: &'static str, why: String },
    #[error("the journal refused the record: {0}")]
    Journal(#[from] JournalError),
}

/// The longest identifier (operator, job, operation) accepted.
pub const MAX_ID_LEN: usize = 64;
/// The most scrap or rework parts one report may carry.
pub const MAX_PARTS: u64 = 1_000_000;
/// The longest note accepted with a stop reason.
pub const MAX_NOTE_LEN: usize = 500;

/// Checks commands and writes them to the journal.
#[derive(Clone)]
pub struct Commands {
    journal: Journal,
    taxonomy: Taxonomy,
    machines: std::sync::Arc<HashSet<MachineId>>,
    /// ERP work center → machine.
    work_centers: std::sync::Arc<std::collections::BTreeMap<String, MachineId>>,
    clock: Clock,
}

impl Commands {
    pub fn new(
        journal: Journal,
        taxonomy: Taxonomy,
        machines: impl IntoIterator<Item = MachineId>,
        clock: Clock,
    ) -> Self {
        Self {
            journal,
            taxonomy,
            machines: std::sync::Arc::new(machines.into_iter().collect()),
            work_centers: Default::default(),
            clock,
        }
    }

    /// ERP work centers that name machines (`[context] work_centers`).
    pub fn with_work_centers(
        mut self,
        work_centers: std::collections::BTreeMap<String, MachineId>,
    ) -> Self {
        self.work_centers = std::sync::Arc::new(work_centers);
        self
    }

    /// The machine an ERP or QMS names: a configured machine id, or a work center.
    pub fn machine(&self, id_or_work_center: &str) -> Result<MachineId, CommandError> {
        let s = id_or_work_center.trim();
        self.machines
            .iter()
            .find(|m| m.as_str() == s)
            .or_else(|| self.work_centers.get(s))
            .cloned()
            .ok_or_else(|| CommandError::UnknownMachine(s.to_string()))
    }

    /// Every configured machine, in id order.
    pub fn machines(&self) -> Vec<MachineId> {
        let mut v: Vec<MachineId> = self.machines.iter().cloned().collect();
        v.sort();
        v
    }

    pub fn now(&self) -> crate::model::Timestamp {
        self.clock.now()
    }

    /// Writes dispatch lists (one per machine) in one commit: all of them or none.
    pub async fn dispatch(
        &self,
        lists: Vec<(MachineId, Vec<crate::model::DispatchedOperation>)>,
        origin: CommandOrigin,
    ) -> Result<u64, CommandError> {
        let at = self.clock.now();
        let records = lists
            .into_iter()
            .map(|(machine, operations)| {
                RecordKind::Dispatch(Box::new(crate::model::DispatchRecord {
                    machine,
                    at,
                    origin: origin.clone(),
                    operations,
                }))
            })
            .collect();
        Ok(self.journal.append(records).await?.start)
    }

    /// Writes a QMS event for each of `machines` in one commit.
    pub async fn quality(
        &self,
        machines: Vec<MachineId>,
        origin: CommandOrigin,
        event: crate::model::QualityEvent,
    ) -> Result<u64, CommandError> {
        let at = self.clock.now();
        let records = machines
            .into_iter()
            .map(|machine| {
                RecordKind::Quality(Box::new(crate::model::QualityRecord {
                    machine,
                    at,
                    origin: origin.clone(),
                    event: event.clone(),
                }))
            })
            .collect();
        Ok(self.journal.append(records).await?.start)
    }

    pub fn taxonomy(&self) -> &Taxonomy {
        &self.taxonomy
    }

    /// A stop reason from its code (`setup`, `waiting_inspection` …) and an optional note.
    pub fn stop_reason(&self, code: &str, note: &str) -> Result<Command, CommandError> {
        let code = code.trim();
        let reason = LossCategory::custom(code)
            .ok()
            .filter(|c| self.taxonomy.contains(c))
            .ok_or_else(|| CommandError::BadArgument {
                argument: "ReasonCode",
                why: format!(
                    "expected one of the shop's loss categories ({}), found {code:?}",
                    self.taxonomy
                        .categories()
                        .iter()
                        .map(|c| c.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
        let note = note.trim();
        if note.chars().count() > MAX_NOTE_LEN {
            return Err(CommandError::BadArgument {
                argument: "Note",
                why: format!(
                    "expected at most {MAX_NOTE_LEN} characters, found {}",
                    note.chars().count()
                ),
            });
        }
        Ok(Command::StopReason {
            reason,
            note: Some(note.to_string()).filter(|n| !n.is_empty()),
        })
    }

    /// Writes `command` for `machine`; returns the record's sequence number once durable.
    pub async fn submit(
        &self,
        machine: &str,
        origin: CommandOrigin,
        command: Command,
    ) -> Result<u64, CommandError> {
        let machine = self
            .machines
            .iter()
            .find(|m| m.as_str() == machine)
            .cloned()
            .ok_or_else(|| CommandError::UnknownMachine(machine.to_string()))?;
        check_command(&command)?;
        let record = RecordKind::Command(Box::new(CommandRecord {
            machine,
            at: self.clock.now(),
            origin,
            command,
        }));
        let range = self.journal.append(vec![record]).await?;
        Ok(range.start)
    }
}

/// Identifiers are what operators and ERPs use: short, printable, not blank.
pub fn check_id(argument: &'static str, s: &str) -> Result<(), CommandError> {
    match id_problem(s) {
        Some(why) => Err(CommandError::BadArgument { argument, why }),
        None => Ok(()),
    }
}

/// What is wrong with an identifier, if anything.
pub fn id_problem(s: &str) -> Option<String> {
    if s.trim().is_empty() {
        return Some("expected an identifier, found an empty string".into());
    }
    if s.chars().count() > MAX_ID_LEN {
        return Some(format!(
            "expected at most {MAX_ID_LEN} characters, found {}",
            s.chars().count()
        ));
    }
    if s.chars().any(char::is_control) {
        return Some(format!("expected printable text, found {s:?}"));
    }
    None
}

fn check_command(c: &Command) -> Result<(), CommandError> {
    match c {
        Command::StopReason { .. } | Command::SignOut => Ok(()),
        Command::Parts { scrap, rework } => {
            if scrap.saturating_add(*rework) == 0 || scrap.max(rework) > &MAX_PARTS {
                return Err(CommandError::BadArgument {
                    argument: "Parts",
                    why: format!(
                        "expected 1 to {MAX_PARTS} scrap or rework parts, found scrap {scrap} and rework {rework}"
                    ),
                });
            }
            Ok(())
        }
        Command::SignIn { operator } => check_id("OperatorId", operator),
        Command::ConfirmOperation { job, operation } => {
            check_id("JobId", job)?;
            check_id("OperationId", operation)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::JournalOptions;

    fn commands(dir: &std::path::Path) -> Commands {
        let journal = Journal::open(dir, JournalOptions::default()).unwrap();
        Commands::new(
            journal,
            Taxonomy::default(),
            [MachineId::new("m1").unwrap()],
            Clock::system(),
        )
    }

    #[tokio::test]
    async fn a_command_becomes_a_durable_record_naming_its_origin() {
        let dir = tempfile::tempdir().unwrap();
        let c = commands(dir.path());
        let origin = CommandOrigin {
            channel: "opcua".into(),
            user: Some("ana".into()),
        };
        let cmd = c.stop_reason("setup", " new fixture ").unwrap();
        let seq = c.submit("m1", origin.clone(), cmd).await.unwrap();
        let records = c.journal.read(seq - 1, 10).unwrap();
        let RecordKind::Command(r) = &records[0].kind else {
            panic!("{records:?}")
        };
        assert_eq!(r.origin, origin);
        assert_eq!(
            r.command,
            Command::StopReason {
                reason: LossCategory::SETUP,
                note: Some("new fixture".into())
            }
        );
        let json = serde_json::to_value(&records[0]).unwrap();
        assert_eq!(json["kind"], "command");
        assert_eq!(json["command"], "stop_reason");
        assert_eq!(json["reason"], "setup");
    }

    #[tokio::test]
    async fn bad_commands_are_refused_with_the_argument_named() {
        let dir = tempfile::tempdir().unwrap();
        let c = commands(dir.path());
        let e = c.stop_reason("coffee", "").unwrap_err().to_string();
        assert!(e.starts_with("ReasonCode: expected one of"), "{e}");
        assert!(e.contains("setup") && e.contains("\"coffee\""), "{e}");
        let origin = CommandOrigin {
            channel: "opcua".into(),
            user: None,
        };
        let e = c
            .submit(
                "m1",
                origin.clone(),
                Command::SignIn {
                    operator: " ".into(),
                },
            )
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("OperatorId: expected an identifier")
        );
        let e = c.submit("m9", origin, Command::SignOut).await.unwrap_err();
        assert!(matches!(e, CommandError::UnknownMachine(_)));
        assert_eq!(c.journal.last_seq(), 0);
    }
}
