//! `shopbridge score`: compares the bridge's classified intervals in a data directory with the
//! simulated shop's ground truth (`truth.jsonl`) and prints per-category precision and recall,
//! ending with `correct_time_pct=NN.N`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::journal::ReadOnlyJournal;
use crate::model::RecordKind;
use crate::sim::score::{latest, score};
use crate::sim::{TRUTH_FILE, TruthLine};

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// The data directory of a demo run (journal.redb and truth.jsonl); the bridge must be
    /// stopped.
    #[arg(long, default_value = "./shopbridge-data")]
    pub data_dir: PathBuf,
    /// The ground truth (default: truth.jsonl in the data directory).
    #[arg(long)]
    pub truth: Option<PathBuf>,
}

pub fn run(a: ScoreArgs) -> anyhow::Result<i32> {
    let truth_path = a.truth.unwrap_or_else(|| a.data_dir.join(TRUTH_FILE));
    let text = std::fs::read_to_string(&truth_path)
        .with_context(|| format!("cannot read the ground truth {}", truth_path.display()))?;
    let mut truth = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let t: TruthLine = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a truth line", truth_path.display(), n + 1))?;
        truth.push(t);
    }
    let journal = ReadOnlyJournal::open(&a.data_dir).with_context(|| {
        format!(
            "cannot read the journal in {} (stop the bridge first)",
            a.data_dir.display()
        )
    })?;
    let mut intervals = Vec::new();
    let mut operations = Vec::new();
    for r in crate::journal::all_records(|after, max| journal.read(after, max)) {
        match r?.kind {
            RecordKind::Interval(i) => intervals.push(*i),
            RecordKind::Operation(o) => operations.push(*o),
            _ => {}
        }
    }
    let (intervals, revisions) = latest(intervals);
    let mut s = score(&intervals, &operations, &truth);
    s.revisions = revisions;
    println!("{}", s.report());
    Ok(0)
}
