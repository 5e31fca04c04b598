//! The command line: `demo`, `simulate`, `run`, `check`, `export`, `bench`.

mod bench;
mod bench_focas;
mod bench_opcua;
mod bench_plugin;
mod bench_polling;
mod bench_protocols;
mod bench_review;
mod bench_soak;
mod bench_sparkplug;
mod reclassify;
mod score;
mod simulate;

pub use simulate::{DemoArgs, SimulateArgs};

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::app::{self, RunOptions};
use crate::config::{self, Config};
use crate::model::{MachineId, Timestamp};
use crate::northbound::export;

/// shopbridge: machine data in, one time-aligned, job-aware record out.
///
/// Collects what CNC machines report, turns it into one canonical, time-aligned record of what
/// every machine did, keeps that record durably on this box (the journal), and serves it as an
/// OPC UA server (every machine an OPC 40501 MachineTool), as a Sparkplug B edge node over MQTT,
/// over a REST API and as exports. This release reads MTConnect agents, SHDR adapters, Haas
/// controls (MDC), Modbus devices and Fanuc controls (FOCAS/Ethernet), and simulated machines.
#[derive(Debug, Parser)]
#[command(name = "shopbridge", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a simulated job shop end to end, no configuration file needed.
    ///
    /// Simulated machines (a mixed fleet: Haas, Okuma, Mazak, DMG MORI, Fanuc) work a realistic
    /// shift: setups, prove-outs, production cycles, tool changes, alarms, waiting, power-off.
    /// Timestamps are real (UTC, from now on); the shop's calendar is shifted so that the demo
    /// starts at 08:00 of a weekday, busy whatever the hour.
    /// Each machine is served over the network like a real one (even-numbered machines as SHDR
    /// adapters, odd ones as devices of one MTConnect agent), and the bridge reads them through
    /// its real drivers and profiles into the journal in --data-dir; each machine writes what it
    /// really did to truth.jsonl there, for scoring.
    Demo(DemoArgs),
    /// Run the simulated shop alone: machine i as an SHDR adapter on 127.0.0.1:(7878 + i) and
    /// every machine through one MTConnect agent on 127.0.0.1:5000 (see --help for options).
    Simulate(SimulateArgs),
    /// Run the bridge from a configuration file (see packaging/shopbridge.example.toml).
    Run {
        /// The TOML configuration file. Every key can be overridden from the environment as
        /// SHOPBRIDGE_<SECTION>__<KEY>, e.g. SHOPBRIDGE_HTTP__LISTEN=0.0.0.0:8080.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a configuration file (and the profiles its machines use), or machine profile
    /// files: prints OK (exit 0) or every error with file:line:column (exit 2).
    #[command(group = clap::ArgGroup::new("what").required(true).multiple(true))]
    Check {
        /// The configuration file to check.
        #[arg(long, short, group = "what")]
        config: Option<PathBuf>,
        /// A profile file to check (repeatable); `extends` is looked up beside it and among the
        /// built-in profiles.
        #[arg(long, short, group = "what")]
        profile: Vec<PathBuf>,
    },
    /// Make a REST API token: prints the token (give it to its holder) and the
    /// `[[http.tokens]]` entry to add to the configuration (only the token's SHA-256 is kept).
    NewToken {
        /// Who holds it (recorded as who spoke, e.g. `erp`, `qms`, `tablet-cell-2`).
        #[arg(long)]
        name: String,
        /// viewer, operator, planner or admin.
        #[arg(long, default_value = "viewer")]
        role: String,
    },
    /// Print an argon2 hash of a password for `[[opcua.users]] password_hash`.
    ///
    /// Reads the password from standard input (one line; type it, or pipe it in) so that it
    /// stays out of the shell history and the process list.
    HashPassword,
    /// Export journal records as JSON Lines or CSV.
    ///
    /// Works while a bridge is running on the same data directory (it then reads through that
    /// bridge's HTTP API, found via bridge.json) and when none is.
    Export(ExportArgs),
    /// Score a demo run: compare the classified intervals with what the simulated machines
    /// really did (truth.jsonl); prints per-category precision and recall, and last
    /// `correct_time_pct=NN.N`.
    Score(score::ScoreArgs),
    /// Derive a period's intervals again from the journal under today's rules and calendars,
    /// and write what changed as revisions (`why: "reclassified"`). Prints what it did as JSON.
    Reclassify(reclassify::ReclassifyArgs),
    /// Measure performance (see the README's "Performance" section).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Test helper: append to a journal forever, printing each durable sequence number.
    #[command(hide = true)]
    JournalAppendLoop {
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportWhat {
    Records,
    Intervals,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The bridge's data directory (the one holding journal.redb).
    #[arg(long, default_value = "./shopbridge-data")]
    pub data_dir: PathBuf,
    /// Only records at or after this time (RFC 3339, e.g. 2026-11-24T06:00:00Z).
    #[arg(long)]
    pub from: Option<String>,
    /// Only records before this time (RFC 3339).
    #[arg(long)]
    pub to: Option<String>,
    /// Only this machine's records.
    #[arg(long)]
    pub machine: Option<String>,
    /// records: every journal record; intervals: the classified spans (the newest revision of
    /// each), one row per span (docs/data-model.md describes both).
    #[arg(long, value_enum, default_value = "records")]
    pub what: ExportWhat,
    /// jsonl: one JSON object per line, as the REST API shows them; csv: one row per record or
    /// interval, with a header (for records, observations fill signal, value, quality and
    /// times; other kinds put their JSON in the detail column).
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Write here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// async-opcua logs every endpoint and import at INFO and warns about the (deprecated) binary
/// type dictionaries in the companion NodeSets; only its errors matter to a user, unless the
/// level names `opcua` itself. rumqttd (the embedded broker) logs every connection at INFO and
/// every client that leaves at ERROR; the bridge checks its port itself and says when it fails.
const QUIET_LIBRARIES: &str = ",opcua_server=error,opcua_client=error,opcua_crypto=warn,opcua_core=warn,opcua_nodes=error,opcua_types=error,rumqttd=off";

fn init_tracing(level: &str, json: bool) {
    let directive = if level.contains("opcua") {
        level.to_string()
    } else {
        format!("{level}{QUIET_LIBRARIES}")
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&directive))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        b.json().try_init()
    } else {
        b.compact().try_init()
    };
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs a parsed command line; returns the process exit code.
pub fn main(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Demo(a) => {
            init_tracing("info", false);
            crate::memory::tune_for_long_run();
            simulate::demo(a)
        }
        Command::Simulate(a) => {
            init_tracing("info", false);
            simulate::simulate(a)
        }
        Command::Run { config } => {
            let cfg = match config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return Ok(2);
                }
            };
            init_tracing(&cfg.log.level, cfg.log.json);
            crate::memory::tune_for_long_run();
            let clock = app::demo_clock(cfg.sim.speed);
            run_config(cfg, clock)
        }
        Command::NewToken { name, role } => {
            if crate::config::Role::parse(&role).is_none() {
                anyhow::bail!(
                    "--role: expected one of {:?}, found {role:?}",
                    crate::config::Role::NAMES
                );
            }
            MachineId::new(&name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
            let (token, hash) = crate::northbound::http::auth::new_token()
                .context("cannot read random bytes for the token")?;
            println!("token (give it to {name}; it is not shown again): {token}\n");
            println!("[[http.tokens]]\nname = {name:?}\nrole = {role:?}\nsha256 = {hash:?}");
            Ok(0)
        }
        Command::HashPassword => {
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                eprint!("password (input is shown; pipe it in to avoid that): ");
            }
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            let password = line.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                anyhow::bail!("expected a password on standard input, found an empty line");
            }
            let hash = crate::northbound::opcua::auth::hash_password(password)
                .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?;
            println!("{hash}");
            Ok(0)
        }
        Command::Check { config, profile } => {
            let mut worst = 0;
            let mut lines = Vec::new();
            if let Some(config) = config {
                let (text, code) = config::check_command(&config);
                worst = worst.max(code);
                if code != 0 {
                    lines.push(text);
                }
            }
            for p in profile {
                if let Err(e) = crate::normalize::profile::load_file(&p) {
                    worst = 2;
                    lines.push(format!("{e}\nin profile {}", p.display()));
                }
            }
            // Exactly "OK" when everything passed, so scripts can compare the output.
            println!(
                "{}",
                if worst == 0 {
                    "OK".to_string()
                } else {
                    lines.join("\n")
                }
            );
            Ok(worst)
        }
        Command::Export(a) => export_cmd(a),
        Command::Score(a) => score::run(a),
        Command::Reclassify(a) => reclassify::run(a),
        Command::Bench(b) => {
            init_tracing("warn", false);
            bench::run(b)
        }
        Command::JournalAppendLoop { dir } => bench::append_loop(&dir),
    }
}

fn run_config(cfg: Config, clock: crate::clock::Clock) -> anyhow::Result<i32> {
    let rt = runtime()?;
    rt.block_on(async move {
        let opts = RunOptions {
            clock,
            announce: true,
            http_bound: None,
        };
        app::run(cfg, opts, CancellationToken::new()).await
    })?;
    Ok(0)
}

fn export_cmd(a: ExportArgs) -> anyhow::Result<i32> {
    let parse = |s: &Option<String>, what: &str| -> anyhow::Result<Option<Timestamp>> {
        s.as_deref()
            .map(|s| Timestamp::parse_rfc3339(s).map_err(|e| anyhow::anyhow!("--{what}: {e}")))
            .transpose()
    };
    let filter = export::Filter {
        from: parse(&a.from, "from")?,
        to: parse(&a.to, "to")?,
        machine: a
            .machine
            .as_deref()
            .map(MachineId::new)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--machine: {e}"))?,
    };
    let format = match a.format {
        ExportFormat::Jsonl => export::Format::Jsonl,
        ExportFormat::Csv => export::Format::Csv,
    };
    let out: Box<dyn std::io::Write> = match &a.output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match a.what {
        ExportWhat::Records => {
            let mut w = export::Writer::new(out, format)?;
            let n = rt.block_on(export::export(&a.data_dir, &filter, &mut w))?;
            w.finish()?;
            eprintln!("exported {n} records");
        }
        ExportWhat::Intervals => {
            let mut out = out;
            let n = rt.block_on(export::export_intervals(
                &a.data_dir,
                &filter,
                format,
                &mut out,
            ))?;
            out.flush()?;
            eprintln!("exported {n} intervals");
        }
    }
    Ok(0)
}
