//! `shopbridge reclassify`: derive a period's intervals again under today's rules and write the
//! differences as revisions. With a bridge running on the data directory, it asks that bridge
//! (which knows its rules and calendars); with none, it opens the journal itself and needs the
//! configuration file.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::journal::{Journal, JournalError, JournalOptions, ReadOnlyJournal};
use crate::model::Timestamp;

#[derive(Debug, Args)]
pub struct ReclassifyArgs {
    /// The bridge's data directory.
    #[arg(long, default_value = "./shopbridge-data")]
    pub data_dir: PathBuf,
    /// The period's start (RFC 3339, e.g. 2026-11-24T06:00:00Z).
    #[arg(long)]
    pub from: String,
    /// The period's end (RFC 3339).
    #[arg(long)]
    pub to: String,
    /// The configuration whose rules and calendars apply (needed when no bridge is running on
    /// the data directory; a running bridge uses its own).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// An admin's API token for the running bridge (re-classification needs the admin role).
    /// Default: the demo's `<data-dir>/admin-token`, when there is one.
    #[arg(long, env = "SHOPBRIDGE_TOKEN", value_name = "TOKEN")]
    pub token: Option<String>,
}

fn time(name: &str, v: &str) -> anyhow::Result<Timestamp> {
    Timestamp::parse_rfc3339(v.trim()).map_err(|_| {
        anyhow::anyhow!("--{name}: expected a time like 2026-11-24T06:00:00Z, found {v:?}")
    })
}

pub fn run(a: ReclassifyArgs) -> anyhow::Result<i32> {
    let (from, to) = (time("from", &a.from)?, time("to", &a.to)?);
    if to <= from {
        anyhow::bail!("--to must be after --from");
    }
    match ReadOnlyJournal::open(&a.data_dir) {
        Err(JournalError::AlreadyOpen { .. }) => through_bridge(&a, from, to),
        Err(e) => Err(e).context("cannot open the journal"),
        Ok(ro) => {
            drop(ro);
            let path = a.config.as_ref().context(
                "no bridge is running on this data directory: give --config so that the rules and calendars are known",
            )?;
            let cfg = crate::config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
            let engine = crate::app::engine_config(&cfg);
            let rt = super::runtime()?;
            rt.block_on(async move {
                let journal = Journal::open(&a.data_dir, JournalOptions::default())?;
                let mut failed = None;
                let records = crate::journal::all_records(|after, max| journal.read(after, max))
                    .map_while(|r| match r {
                        Ok(r) => Some(r),
                        Err(e) => {
                            failed = Some(e);
                            None
                        }
                    });
                let now = crate::clock::Clock::system().now();
                let (revisions, stats) =
                    crate::context::reclassify::reclassify(records, engine, from, to, now);
                if let Some(e) = failed {
                    return Err(anyhow::Error::from(e).context("reading the journal"));
                }
                if !revisions.is_empty() {
                    journal.append(revisions).await?;
                }
                journal.close_async().await;
                println!("{}", serde_json::to_string(&stats)?);
                Ok::<_, anyhow::Error>(0)
            })
        }
    }
}

fn through_bridge(a: &ReclassifyArgs, from: Timestamp, to: Timestamp) -> anyhow::Result<i32> {
    let bf = crate::northbound::export::BridgeFile::read(&a.data_dir).map_err(|e| {
        anyhow::anyhow!(
            "a bridge holds the journal, but its {} in {} cannot be read: {e}",
            crate::northbound::export::BRIDGE_FILE,
            a.data_dir.display()
        )
    })?;
    let rt = super::runtime()?;
    rt.block_on(async move {
        let url = format!("http://{}/api/v1/reclassify", bf.http);
        let token = a.token.clone().or_else(|| {
            std::fs::read_to_string(a.data_dir.join("admin-token"))
                .ok()
                .map(|t| t.trim().to_string())
        });
        let mut req = reqwest::Client::new()
            .post(&url)
            .json(&serde_json::json!({ "from": from, "to": to }));
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the running bridge at {url}"))?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            anyhow::bail!("the bridge refused: {status} {body}");
        }
        println!("{body}");
        Ok(0)
    })
}
