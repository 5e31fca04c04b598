//! The dispatch drop folder: the ERP exports CSV or JSON files into a directory; each file
//! replaces the dispatch lists of the machines it names, all of them or none.
//!
//! A file is taken once its size and modification time held still for one scan (an ERP still
//! writing it is left alone). Taken files move to `processed/`; refused ones to `rejected/`,
//! beside a `<file>.error.txt` that names every problem by line (CSV) or position (JSON).
//! Machines are named by id or ERP work center (`[context] work_centers`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::commands::Commands;
use super::dispatch::{self, Columns, OperationInput, Problem};
use crate::model::{CommandOrigin, DispatchedOperation, MachineId};

/// `[context.drop_folder]`, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropFolder {
    pub dir: PathBuf,
    pub columns: Columns,
    pub interval: Duration,
}

/// A JSON file: one machine's list, or operations that each name their machine.
#[derive(Deserialize)]
#[serde(untagged)]
enum JsonFile {
    One {
        machine: String,
        operations: Vec<OperationInput>,
    },
    Many(Vec<OperationInput>),
}

/// Reads a file's text into per-machine lists, or every problem.
pub fn lists(
    name: &str,
    text: &str,
    columns: &Columns,
    commands: &Commands,
) -> Result<Vec<(MachineId, Vec<DispatchedOperation>)>, Vec<Problem>> {
    let mut problems = Vec::new();
    // (where, the operation, its machine as written)
    let rows: Vec<(String, OperationInput, Option<String>)> = if name.ends_with(".json") {
        match serde_json::from_str::<JsonFile>(text) {
            Ok(JsonFile::One {
                machine,
                operations,
            }) => operations
                .into_iter()
                .enumerate()
                .map(|(i, o)| (format!("operations[{i}]"), o, Some(machine.clone())))
                .collect(),
            Ok(JsonFile::Many(ops)) => ops
                .into_iter()
                .enumerate()
                .map(|(i, o)| {
                    let m = o.machine.clone().or(o.work_center.clone());
                    (format!("[{i}]"), o, m)
                })
                .collect(),
            Err(e) => {
                return Err(vec![Problem {
                    at: format!("line {}, column {}", e.line(), e.column()),
                    message: format!(
                        "expected {{\"machine\": …, \"operations\": […]}} or a list of operations that each name their machine: {e}"
                    ),
                }]);
            }
        }
    } else {
        let (rows, line_problems) = dispatch::parse_csv(text, columns)?;
        problems.extend(line_problems);
        rows.into_iter()
            .map(|(line, o)| {
                let m = o.machine.clone().or(o.work_center.clone());
                (format!("line {line}"), o, m)
            })
            .collect()
    };
    let mut per: BTreeMap<MachineId, Vec<DispatchedOperation>> = BTreeMap::new();
    let mut seen: HashMap<(MachineId, String, String), String> = HashMap::new();
    for (at, o, m) in rows {
        let machine = match m.as_deref().map(|m| commands.machine(m)) {
            Some(Ok(m)) => Some(m),
            Some(Err(e)) => {
                problems.push(Problem {
                    at: at.clone(),
                    message: e.to_string(),
                });
                None
            }
            None => {
                problems.push(Problem {
                    at: at.clone(),
                    message: "no machine or work center".into(),
                });
                None
            }
        };
        let op = dispatch::check_operation(&o, &at, &mut problems);
        if let (Some(m), Some(op)) = (machine, op) {
            let key = (m.clone(), op.job.clone(), op.operation.clone());
            if let Some(first) = seen.insert(key, at.clone()) {
                problems.push(Problem {
                    at,
                    message: format!(
                        "job {:?} operation {:?} for {m} is already listed at {first}",
                        op.job, op.operation
                    ),
                });
                continue;
            }
            per.entry(m).or_default().push(op);
        }
    }
    for (m, ops) in &per {
        if ops.len() > dispatch::MAX_OPERATIONS {
            problems.push(Problem {
                at: "the file".into(),
                message: format!("{m}: more than {} operations", dispatch::MAX_OPERATIONS),
            });
        }
    }
    if per.is_empty() && problems.is_empty() {
        problems.push(Problem {
            at: "the file".into(),
            message: "the file holds no operations".into(),
        });
    }
    if problems.is_empty() {
        Ok(per.into_iter().collect())
    } else {
        Err(problems)
    }
}

fn is_dispatch_file(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    !name.starts_with('.')
        && p.is_file()
        && p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("csv") || e.eq_ignore_ascii_case("json"))
}

/// Moves `file` into `dir/sub/`, keeping its name (with a time suffix if taken).
fn move_into(file: &Path, sub: &str) -> std::io::Result<PathBuf> {
    let parent = file.parent().unwrap_or(Path::new("."));
    let dest_dir = parent.join(sub);
    std::fs::create_dir_all(&dest_dir)?;
    let name = file
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    let mut dest = dest_dir.join(&name);
    if dest.exists() {
        let stamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        dest = dest_dir.join(format!("{stamp}-{}", name.to_string_lossy()));
    }
    std::fs::rename(file, &dest)?;
    Ok(dest)
}

/// Watches the folder until `shutdown`.
pub async fn run(cfg: DropFolder, commands: Commands, shutdown: CancellationToken) {
    if let Err(e) = std::fs::create_dir_all(&cfg.dir) {
        tracing::error!(dir = %cfg.dir.display(), error = %e, "the dispatch drop folder cannot be created; dispatch files are not read");
        return;
    }
    tracing::info!(dir = %cfg.dir.display(), "watching the dispatch drop folder");
    // What each file looked like at the last scan: taken once it holds still.
    let mut last: HashMap<PathBuf, (u64, Option<SystemTime>)> = HashMap::new();
    // Files taken but not moved away (a read-only folder): not taken again while unchanged.
    let mut taken: HashMap<PathBuf, (u64, Option<SystemTime>)> = HashMap::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(cfg.interval) => {}
        }
        let entries = match std::fs::read_dir(&cfg.dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(dir = %cfg.dir.display(), error = %e, "cannot read the dispatch drop folder");
                continue;
            }
        };
        let mut now: HashMap<PathBuf, (u64, Option<SystemTime>)> = HashMap::new();
        for e in entries.flatten() {
            let p = e.path();
            if !is_dispatch_file(&p) {
                continue;
            }
            let meta = e.metadata().ok();
            let sig = (
                meta.as_ref().map_or(0, |m| m.len()),
                meta.and_then(|m| m.modified().ok()),
            );
            if taken.get(&p) == Some(&sig) {
                continue;
            }
            if last.get(&p) == Some(&sig) {
                if !take(&p, &cfg, &commands).await {
                    taken.insert(p, sig);
                }
            } else {
                now.insert(p, sig);
            }
        }
        last = now;
    }
}

/// Takes one file; false when it was handled but could not be moved away.
async fn take(p: &Path, cfg: &DropFolder, commands: &Commands) -> bool {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let result = match std::fs::read_to_string(p) {
        Ok(text) => lists(&name.to_ascii_lowercase(), &text, &cfg.columns, commands),
        Err(e) => Err(vec![Problem {
            at: name.clone(),
            message: format!("cannot read it: {e}"),
        }]),
    };
    let outcome = match result {
        Ok(lists) => {
            let machines: Vec<String> = lists.iter().map(|(m, _)| m.to_string()).collect();
            let origin = CommandOrigin {
                channel: "drop_folder".into(),
                user: Some(name.clone()),
            };
            match commands.dispatch(lists, origin).await {
                Ok(seq) => {
                    tracing::info!(file = %name, machines = %machines.join(","), seq, "dispatch file applied");
                    move_into(p, "processed").map(|_| ())
                }
                Err(e) => {
                    // Not the file's fault: leave it to be taken again.
                    tracing::error!(file = %name, error = %e, "a dispatch file could not be written to the journal; it stays in the folder");
                    return true;
                }
            }
        }
        Err(problems) => {
            let text: String = problems.iter().map(|p| format!("{name}: {p}\n")).collect();
            let first = problems
                .first()
                .map(ToString::to_string)
                .unwrap_or_default();
            tracing::warn!(file = %name, problems = problems.len(), %first, "dispatch file refused whole; see rejected/{name}.error.txt");
            move_into(p, "rejected").and_then(|dest| {
                let mut err = dest.clone().into_os_string();
                err.push(".error.txt");
                std::fs::write(PathBuf::from(err), text)
            })
        }
    };
    match outcome {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(file = %name, dir = %cfg.dir.display(), error = %e, "cannot move a dispatch file out of the drop folder; it is not taken again until it changes");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::journal::{Journal, JournalOptions};
    use crate::model::{RecordKind, Taxonomy};

    fn commands(j: &Journal) -> Commands {
        let m = |s: &str| MachineId::new(s).unwrap();
        Commands::new(
            j.clone(),
            Taxonomy::default(),
            [m("mill-1"), m("lathe-2")],
            Clock::system(),
        )
        .with_work_centers([("WC-10".to_string(), m("lathe-2"))].into_iter().collect())
    }

    #[tokio::test]
    async fn an_erp_export_is_taken_whole_or_refused_whole() {
        let data = tempfile::tempdir().unwrap();
        let drop = tempfile::tempdir().unwrap();
        let journal = Journal::open(data.path(), JournalOptions::default()).unwrap();
        let cfg = DropFolder {
            dir: drop.path().to_path_buf(),
            columns: [
                ("job", "Job No"),
                ("operation", "Op"),
                ("work_center", "Resource"),
                ("quantity", "Qty"),
            ]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
            interval: Duration::from_millis(20),
        };
        std::fs::write(
            drop.path().join("dispatch.csv"),
            "Job No,Op,Resource,Program,Qty,Due\n24173,10,WC-10,O1001,40,2030-01-02\n24174,20,mill-1,O2002,5,\n",
        )
        .unwrap();
        std::fs::write(
            drop.path().join("bad.csv"),
            "Job No,Op,Resource,Program,Qty\n24175,10,WC-99,O1,4\n24176,10,mill-1,O2,x\n",
        )
        .unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(cfg, commands(&journal), stop.clone()));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !(drop.path().join("processed/dispatch.csv").exists()
            && drop.path().join("rejected/bad.csv.error.txt").exists())
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the files were not taken"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.cancel();
        let _ = task.await;
        let errors =
            std::fs::read_to_string(drop.path().join("rejected/bad.csv.error.txt")).unwrap();
        // Every problem at once: the unknown work center and the bad number.
        assert!(
            errors.contains("bad.csv: line 3, column \"Qty\": expected a number"),
            "{errors}"
        );
        assert!(
            errors.contains("bad.csv: line 2: no machine \"WC-99\" is configured"),
            "{errors}"
        );
        let lists: Vec<_> = journal
            .read(0, 100)
            .unwrap()
            .into_iter()
            .filter_map(|r| match r.kind {
                RecordKind::Dispatch(d) => Some(d),
                _ => None,
            })
            .collect();
        assert_eq!(
            lists.len(),
            2,
            "one record per machine named, none from the bad file"
        );
        let lathe = lists
            .iter()
            .find(|d| d.machine.as_str() == "lathe-2")
            .unwrap();
        assert_eq!(lathe.operations[0].job, "24173");
        assert_eq!(lathe.operations[0].programs, vec!["O1001"]);
        assert_eq!(lathe.origin.channel, "drop_folder");
        assert_eq!(lathe.origin.user.as_deref(), Some("dispatch.csv"));
    }
}
