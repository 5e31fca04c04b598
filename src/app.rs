//! Wiring: drivers → normalization (+ context) → journal → consumers, one cancellation token,
//! and a clean shutdown that leaves the journal flushed.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::clock::Clock;
use crate::config::{Config, DriverConfig};
use crate::drivers::{DriverBatch, DriverContext};
use crate::journal::{Journal, JournalError, JournalOptions};
use crate::model::{MachineId, RecordKind};
use crate::normalize::{Normalizer, Profile};
use crate::northbound::export::{BRIDGE_FILE, BridgeFile};
use crate::northbound::http::{self, HttpState, Telemetry};
use crate::northbound::live::{LiveMachine, LiveView, run_live_consumer};

/// Why the bridge could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(
        "cannot listen for HTTP on {addr}: {source} (is another shopbridge or service using it? set [http] listen or --http-port)"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("machine {machine:?}: cannot use devices_file {path}: {reason}")]
    DevicesFile {
        machine: String,
        path: PathBuf,
        reason: String,
    },
    #[error("cannot write {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("machine {machine:?}: profile {profile:?}: {error}")]
    Profile {
        machine: String,
        profile: String,
        error: crate::normalize::ProfileLoadError,
    },
    #[error("machine {machine:?}: {}", crate::config::no_register_map(profile))]
    NoRegisterMap { machine: String, profile: String },
    #[error(transparent)]
    Truth(#[from] crate::sim::TruthError),
    #[error("cannot install the signal handler: {0}")]
    Signal(std::io::Error),
    #[error(transparent)]
    Opcua(#[from] crate::northbound::opcua::OpcuaError),
    #[error(transparent)]
    Sparkplug(#[from] crate::northbound::sparkplug::transport::SparkplugError),
    #[error("a startup task failed: {0}")]
    Task(String),
}

/// Events taken from the driver channel per normalization pass.
const MAX_EVENTS_PER_PASS: usize = 16_384;
/// Journal commits a pipeline keeps in flight before it waits for the oldest.
const MAX_IN_FLIGHT: usize = 4;

/// Reads driver batches until every sender is gone, normalizes them, lets the context layer
/// classify the closed intervals, and appends the records to the journal, keeping up to
/// [`MAX_IN_FLIGHT`] group commits in flight. On the way out it closes every open state
/// interval at `clock.now()`.
pub async fn run_pipeline(
    mut rx: mpsc::Receiver<DriverBatch>,
    journal: Journal,
    telemetry: Arc<Telemetry>,
    clock: Clock,
    profiles: Vec<(MachineId, Arc<Profile>)>,
) {
    let mut normalizer = Normalizer::new();
    for (m, p) in profiles {
        normalizer.set_profile(m, p);
    }
    let mut in_flight: VecDeque<(crate::journal::AppendTicket, usize)> = VecDeque::new();
    let mut last_stats = normalizer.stats;
    let mut events: Vec<crate::drivers::DriverEvent> = Vec::new();
    // Releases what profiles' debounce and hold filters keep, and refreshes the clock view:
    // every TICK while a machine has such filters, else every IDLE_TICK (a bridge of Modbus
    // devices polled each second need not wake ten times a second for nothing).
    let ticker_every = |every: Duration| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    };
    let mut ticker = ticker_every(IDLE_TICK);
    loop {
        let first = tokio::select! {
            b = rx.recv() => match b {
                Some(b) => b,
                None => break,
            },
            _ = ticker.tick() => {
                let mut out = Vec::new();
                normalizer.tick(clock.now(), &mut out);
                publish_stats(&telemetry, &mut last_stats, normalizer.stats);
                publish_clocks(&telemetry, &normalizer);
                submit(&journal, out, &mut in_flight, &telemetry).await;
                continue;
            }
        };
        let mut batches = 1u64;
        events.clear();
        events.extend(first);
        while events.len() < MAX_EVENTS_PER_PASS {
            match rx.try_recv() {
                Ok(more) => {
                    batches += 1;
                    events.extend(more);
                }
                Err(_) => break,
            }
        }
        Telemetry::add(&telemetry.driver_batches_total, batches);
        Telemetry::add(&telemetry.driver_events_total, events.len() as u64);
        let mut out = Vec::with_capacity(events.len() + 8);
        normalizer.process_batch(events.drain(..), &mut out);
        publish_stats(&telemetry, &mut last_stats, normalizer.stats);
        if ticker.period() != TICK && normalizer.has_filters() {
            ticker = ticker_every(TICK);
        }
        submit(&journal, out, &mut in_flight, &telemetry).await;
    }
    // What the time filters still hold goes in before the journal closes.
    let mut out = Vec::new();
    normalizer.tick(clock.now(), &mut out);
    publish_stats(&telemetry, &mut last_stats, normalizer.stats);
    submit(&journal, out, &mut in_flight, &telemetry).await;
    while let Some((t, n)) = in_flight.pop_front() {
        settle(t, n, &telemetry).await;
    }
}

/// How often the pipeline releases filtered values and refreshes the clock view.
const TICK: Duration = Duration::from_millis(100);
/// How often it refreshes the clock view when no machine's profile has a time filter.
const IDLE_TICK: Duration = Duration::from_secs(1);

fn publish_clocks(t: &Telemetry, n: &Normalizer) {
    if let Ok(mut c) = t.clocks.write() {
        for (m, info) in n.clocks() {
            c.insert(m.clone(), info);
        }
    }
}

fn publish_stats(
    t: &Telemetry,
    last: &mut crate::normalize::NormalizeStats,
    now: crate::normalize::NormalizeStats,
) {
    Telemetry::add(&t.observations_total, now.observations - last.observations);
    Telemetry::add(
        &t.state_changes_total,
        now.state_changes - last.state_changes,
    );
    Telemetry::add(
        &t.decode_errors_total,
        now.decode_errors - last.decode_errors,
    );
    Telemetry::add(&t.conditions_total, now.conditions - last.conditions);
    Telemetry::add(&t.assets_total, now.assets - last.assets);
    *last = now;
}

async fn submit(
    journal: &Journal,
    records: Vec<crate::model::RecordKind>,
    in_flight: &mut VecDeque<(crate::journal::AppendTicket, usize)>,
    telemetry: &Telemetry,
) {
    if records.is_empty() {
        return;
    }
    let n = records.len();
    match journal.submit(records).await {
        Ok(t) => in_flight.push_back((t, n)),
        Err(e) => lost(telemetry, n, &e),
    }
    while in_flight.len() > MAX_IN_FLIGHT {
        if let Some((t, n)) = in_flight.pop_front() {
            settle(t, n, telemetry).await;
        }
    }
}

async fn settle(ticket: crate::journal::AppendTicket, n: usize, telemetry: &Telemetry) {
    if let Err(e) = ticket.durable().await {
        lost(telemetry, n, &e);
    }
}

/// Counts records the journal refused and logs it, at most once every 10 s (with the count
/// since the last log), so a full disk does not also flood the log.
fn lost(telemetry: &Telemetry, n: usize, e: &JournalError) {
    use std::sync::Mutex;
    static LAST: Mutex<Option<(Instant, u64)>> = Mutex::new(None);
    Telemetry::add(&telemetry.append_failed_records_total, n as u64);
    let Ok(mut last) = LAST.lock() else { return };
    match &mut *last {
        Some((at, pending)) if at.elapsed() < Duration::from_secs(10) => *pending += n as u64,
        other => {
            let since = other.map(|(_, p)| p).unwrap_or(0);
            tracing::error!(
                error = %e,
                records = n as u64 + since,
                "the journal refused records; they are lost (see shopbridge_pipeline_append_failed_records_total)"
            );
            *other = Some((Instant::now(), 0));
        }
    }
}

/// How `run` was started.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The clock every component reads (scaled in the demo).
    pub clock: Clock,
    /// Print where the API listens, and a stop hint, on standard output (the CLI does; tests
    /// read the address from it).
    pub announce: bool,
    /// Told the HTTP API's address once it listens (the demo's simulated ERP posts to it).
    pub http_bound: Option<std::sync::Arc<tokio::sync::watch::Sender<Option<SocketAddr>>>>,
}

impl JournalOptions {
    pub fn from_config(c: &crate::config::JournalConfig, clock: Clock) -> Self {
        Self {
            max_age: c.max_age,
            max_bytes: c.max_bytes,
            hard_cap_bytes: c.hard_cap_bytes,
            batch_max_records: c.batch_max_records,
            min_free_bytes: c.min_free_bytes,
            clock,
            ..JournalOptions::default()
        }
    }
}

/// The context engine's settings from the configuration: rules, and each machine's calendar
/// and part counting.
pub fn engine_config(config: &Config) -> crate::context::EngineConfig {
    crate::context::EngineConfig {
        rules: config.context.rules.clone(),
        machines: config
            .machines
            .iter()
            .map(|m| {
                (
                    m.id.clone(),
                    crate::context::MachineSettings {
                        calendar: config.context.calendar_for(m.calendar.as_deref()),
                        parts_per_cycle: m.parts_per_cycle,
                    },
                )
            })
            .collect(),
    }
}

/// Runs the bridge until SIGINT/SIGTERM or `shutdown` fires.
pub async fn run(
    config: Config,
    opts: RunOptions,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    let started = Instant::now();
    let clock = opts.clock.clone();
    // Every machine's profile, compiled once (machines sharing a profile share it).
    let source = config.profiles.source();
    let mut compiled: Vec<(String, Arc<Profile>)> = Vec::new();
    let mut profiles = Vec::with_capacity(config.machines.len());
    for m in &config.machines {
        let p = match compiled.iter().find(|(n, _)| *n == m.profile) {
            Some((_, p)) => p.clone(),
            None => {
                let p = Arc::new(source.load(&m.profile).map_err(|error| AppError::Profile {
                    machine: m.id.to_string(),
                    profile: m.profile.clone(),
                    error,
                })?);
                compiled.push((m.profile.clone(), p.clone()));
                p
            }
        };
        if matches!(m.driver, DriverConfig::Modbus { .. }) && p.registers.is_empty() {
            return Err(AppError::NoRegisterMap {
                machine: m.id.to_string(),
                profile: m.profile.clone(),
            });
        }
        profiles.push((m.id.clone(), p));
    }
    let journal = Journal::open(
        &config.journal.dir,
        JournalOptions::from_config(&config.journal, clock.clone()),
    )?;
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|source| AppError::Bind {
            addr: config.http.listen,
            source,
        })?;
    let http_addr = listener.local_addr().map_err(|source| AppError::Bind {
        addr: config.http.listen,
        source,
    })?;
    if let Some(tx) = &opts.http_bound {
        tx.send_replace(Some(http_addr));
    }
    let bridge_file = config.journal.dir.join(BRIDGE_FILE);
    let bf = BridgeFile {
        pid: std::process::id(),
        http: http_addr.to_string(),
        started: Clock::system().now(),
    };
    std::fs::write(
        &bridge_file,
        serde_json::to_vec_pretty(&bf).unwrap_or_default(),
    )
    .map_err(|source| AppError::DataDir {
        path: bridge_file.clone(),
        source,
    })?;

    let telemetry = Arc::new(Telemetry::default());
    let live = Arc::new(LiveView::new(config.machines.iter().map(|m| {
        LiveMachine::new(
            m.id.clone(),
            m.name.clone(),
            m.profile.clone(),
            m.driver.type_name().to_string(),
        )
    })));
    let tasks = TaskTracker::new();
    // Consumers stop on `consumers`, after the pipeline has flushed.
    let consumers = CancellationToken::new();
    // The context engine's inputs (dispatch lists, holds), as the REST API reads them.
    let context_view = Arc::new(crate::context::ContextView::default());
    // ERP, QMS and operator input from any northbound face (REST, OPC UA methods, Sparkplug
    // DCMD).
    let commands = crate::context::commands::Commands::new(
        journal.clone(),
        config.taxonomy.clone(),
        config.machines.iter().map(|m| m.id.clone()),
        clock.clone(),
    )
    .with_work_centers(config.context.work_centers.clone());
    if let Some(d) = &config.context.drop_folder {
        tasks.spawn(
            crate::context::drop_folder::run(d.clone(), commands.clone(), consumers.clone())
                .instrument(tracing::info_span!(
                    "drop_folder",
                    component = "drop_folder"
                )),
        );
    }
    let index = Arc::new(crate::northbound::review::IntervalIndex::default());
    tasks.spawn(
        crate::northbound::review::index::run(journal.clone(), index.clone(), consumers.clone())
            .instrument(tracing::info_span!("interval_index", component = "review")),
    );
    let http_state = HttpState {
        auth: Arc::new(http::auth::Auth::new(&config.http)),
        index,
        taxonomy: config.taxonomy.clone(),
        clock: clock.clone(),
        shutdown: consumers.clone(),
        commands: Some(commands.clone()),
        engine: Some(Arc::new(engine_config(&config))),
        context: context_view.clone(),
        journal: journal.clone(),
        live: live.clone(),
        telemetry: telemetry.clone(),
        started,
        version: env!("CARGO_PKG_VERSION"),
    };
    let http_task = tokio::spawn({
        let c = consumers.clone();
        let max_connections = config.http.max_connections;
        async move {
            if let Err(e) = http::run(listener, http_state, c, max_connections).await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        }
    });
    tasks.spawn(run_live_consumer(
        journal.clone(),
        live.clone(),
        consumers.clone(),
    ));
    // The context layer: classified intervals, operations and the live context, derived from
    // the journal.
    let engine = crate::context::Engine::new(engine_config(&config));
    let counted = telemetry.clone();
    tasks.spawn(
        crate::context::run::run(
            journal.clone(),
            engine,
            context_view.clone(),
            clock.clone(),
            Box::new(move |out| {
                let n = out
                    .iter()
                    .filter(|r| matches!(r, RecordKind::Interval(_)))
                    .count();
                Telemetry::add(&counted.intervals_total, n as u64);
            }),
            consumers.clone(),
        )
        .instrument(tracing::info_span!("context", component = "context")),
    );
    // Each machine's profile signals (the northbound faces publish one value per signal).
    let signals: Vec<Vec<String>> = profiles
        .iter()
        .map(|(_, p)| p.signals.iter().map(|s| s.as_str().to_string()).collect())
        .collect();
    let sparkplug = match &config.sparkplug {
        None => None,
        Some(cfg) => {
            let c = cfg.clone();
            let conn = match tokio::task::spawn_blocking(move || {
                crate::northbound::sparkplug::transport::connect_to(&c)
            })
            .await
            {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => {
                    consumers.cancel();
                    return Err(e.into());
                }
                Err(e) => {
                    consumers.cancel();
                    return Err(AppError::Task(e.to_string()));
                }
            };
            let wiring = crate::northbound::sparkplug::transport::Wiring {
                journal: journal.clone(),
                machines: config
                    .machines
                    .iter()
                    .zip(signals.iter().cloned())
                    .map(|(m, s)| (m.id.clone(), m.name.clone(), s))
                    .collect(),
                data_dir: config.journal.dir.clone(),
                clock: clock.clone(),
                commands: commands.clone(),
                telemetry: telemetry.clone(),
            };
            let url = conn.url();
            let embedded = conn.embedded;
            tasks.spawn(
                crate::northbound::sparkplug::transport::run(
                    cfg.clone(),
                    conn,
                    wiring,
                    consumers.clone(),
                )
                .instrument(tracing::info_span!("sparkplug", component = "sparkplug")),
            );
            Some((
                url,
                embedded,
                cfg.group_id.clone(),
                cfg.edge_node_id.clone(),
            ))
        }
    };
    let opcua = match &config.opcua {
        None => None,
        Some(cfg) => {
            let wiring = crate::northbound::opcua::Wiring {
                journal: journal.clone(),
                commands: commands.clone(),
                taxonomy: config.taxonomy.clone(),
                machines: config
                    .machines
                    .iter()
                    .cloned()
                    .zip(signals.iter().cloned())
                    .collect(),
                data_dir: config.journal.dir.clone(),
                telemetry: telemetry.clone(),
            };
            let started =
                crate::northbound::opcua::start(cfg, wiring, &tasks, consumers.clone()).await;
            match started {
                Ok(s) => Some(s),
                Err(e) => {
                    consumers.cancel();
                    return Err(e.into());
                }
            }
        }
    };

    let (tx, rx) = mpsc::channel::<DriverBatch>(1024);
    let pipeline = tokio::spawn(
        run_pipeline(
            rx,
            journal.clone(),
            telemetry.clone(),
            clock.clone(),
            profiles.clone(),
        )
        .instrument(tracing::info_span!("pipeline", component = "pipeline")),
    );
    let drivers = TaskTracker::new();
    // Simulated machines write what they really did (ground truth) beside the journal.
    let any_sim = config
        .machines
        .iter()
        .any(|m| matches!(m.driver, DriverConfig::Sim { .. }));
    let (truth_writer, truth_sink) = if any_sim {
        let (w, s) = crate::sim::TruthWriter::open(&config.journal.dir).await?;
        (Some(w), Some(s))
    } else {
        (None, None)
    };
    let sim_start = clock.now();
    let specs = driver_specs(&config, &profiles)?;
    let context = |machines: Vec<MachineId>, kind: &'static str, source: &str| {
        let counters = crate::drivers::DriverCounters::new(kind, source);
        if let Ok(mut d) = telemetry.drivers.write() {
            d.push(counters.clone());
        }
        DriverContext {
            machines,
            tx: tx.clone(),
            shutdown: shutdown.clone(),
            clock: clock.clone(),
            counters,
        }
    };
    for (index, m) in config.machines.iter().enumerate() {
        if let DriverConfig::Sim { seed } = &m.driver {
            let Some(truth) = truth_sink.clone() else {
                continue;
            };
            let ctx = context(vec![m.id.clone()], "sim", m.id.as_str());
            let sim = crate::sim::MachineSim::new(
                index,
                m.id.clone(),
                seed.unwrap_or(config.sim.seed),
                sim_start,
            );
            let span = tracing::info_span!("driver", component = "sim", machine = %m.id);
            drivers.spawn(crate::drivers::sim::run(sim, ctx, truth).instrument(span));
        }
    }
    for spec in specs.shdr {
        let ids = spec.machines.iter().map(|(m, _)| m.clone()).collect();
        let ctx = context(ids, "shdr", &spec.address);
        let span = tracing::info_span!("driver", component = "shdr", address = %spec.address);
        drivers.spawn(crate::drivers::shdr::run(spec, ctx).instrument(span));
    }
    for spec in specs.mtconnect {
        let ids = spec.machines.iter().map(|(m, _)| m.clone()).collect();
        let ctx = context(ids, "mtconnect", &spec.url);
        let span = tracing::info_span!("driver", component = "mtconnect", url = %spec.url);
        drivers.spawn(crate::drivers::mtconnect::run(spec, ctx).instrument(span));
    }
    for m in &config.machines {
        if let DriverConfig::Haas { spec, interval } = &m.driver {
            let source = spec.source();
            let ctx = context(vec![m.id.clone()], "haas", &source);
            let span = tracing::info_span!("driver", component = "haas", machine = %m.id, source = %source);
            let timing = crate::drivers::poll::Timing {
                interval: *interval,
                connect_timeout: spec.timeout.max(Duration::from_secs(5)),
            };
            let poller = crate::drivers::haas::Haas::new(spec.clone());
            drivers.spawn(crate::drivers::poll::run(poller, timing, ctx).instrument(span));
        }
    }
    // One process per plugin, feeding every machine that names it.
    let mut plugins: Vec<crate::drivers::plugin::PluginSpec> = Vec::new();
    for m in &config.machines {
        if let DriverConfig::Plugin { plugin, settings } = &m.driver {
            let spec = match plugins.iter_mut().find(|p| p.id == plugin.id) {
                Some(s) => s,
                None => {
                    plugins.push(crate::drivers::plugin::PluginSpec {
                        id: plugin.id.clone(),
                        command: plugin.command.clone(),
                        args: plugin.args.clone(),
                        env: plugin.env.clone(),
                        settings: plugin.settings.clone(),
                        machines: Vec::new(),
                        limits: plugin.limits.clone(),
                        health_interval: plugin.health_interval,
                        health_timeout: plugin.health_timeout,
                    });
                    let last = plugins.len() - 1;
                    &mut plugins[last]
                }
            };
            spec.machines.push((m.id.clone(), settings.clone()));
        }
    }
    for spec in plugins {
        let ids: Vec<MachineId> = spec.machines.iter().map(|(m, _)| m.clone()).collect();
        let ctx = context(ids, "plugin", &spec.id);
        let span = tracing::info_span!("driver", component = "plugin", plugin = %spec.id);
        drivers.spawn(crate::drivers::plugin::run(spec, ctx).instrument(span));
    }
    for m in &config.machines {
        if let DriverConfig::Opcua { spec } = &m.driver {
            let mut spec = spec.clone();
            if spec.pki_dir.as_os_str().is_empty() {
                // The client's own key pair and the server certificates it trusts.
                spec.pki_dir = config.journal.dir.join("pki-client");
            }
            let ctx = context(vec![m.id.clone()], "opcua", &spec.endpoint);
            let span = tracing::info_span!("driver", component = "opcua", machine = %m.id, source = %spec.endpoint);
            drivers.spawn(crate::drivers::opcua_client::run(spec, ctx).instrument(span));
        }
    }
    for m in &config.machines {
        if let DriverConfig::Focas { spec, interval } = &m.driver {
            let source = spec.address.clone();
            let ctx = context(vec![m.id.clone()], "focas", &source);
            let span = tracing::info_span!("driver", component = "focas", machine = %m.id, source = %source);
            let timing = crate::drivers::poll::Timing {
                interval: *interval,
                connect_timeout: spec.timeout.max(Duration::from_secs(5)),
            };
            let poller = crate::drivers::focas::Focas::new(spec.clone());
            drivers.spawn(crate::drivers::poll::run(poller, timing, ctx).instrument(span));
        }
    }
    for (m, (_, profile)) in config.machines.iter().zip(&profiles) {
        if let DriverConfig::Modbus {
            transport,
            unit,
            interval,
            timeout,
        } = &m.driver
        {
            let spec = crate::drivers::modbus::ModbusSpec {
                transport: transport.clone(),
                unit: *unit,
                timeout: *timeout,
                map: profile.registers.clone().into(),
            };
            let source = spec.source();
            let ctx = context(vec![m.id.clone()], "modbus", &source);
            let span = tracing::info_span!("driver", component = "modbus", machine = %m.id, source = %source);
            let timing = crate::drivers::poll::Timing {
                interval: *interval,
                connect_timeout: (*timeout).max(Duration::from_secs(3)),
            };
            let poller = crate::drivers::modbus::Modbus::new(spec);
            drivers.spawn(crate::drivers::poll::run(poller, timing, ctx).instrument(span));
        }
    }
    drop(tx);
    drop(truth_sink);
    drivers.close();
    tracing::info!(
        http = %http_addr,
        machines = config.machines.len(),
        data_dir = %config.journal.dir.display(),
        speed = clock.speed(),
        "shopbridge is running"
    );
    if opts.announce {
        let opcua_line = opcua
            .as_ref()
            .map(|s| format!("\n  OPC UA:     {}  (Objects/Machines)", s.endpoint))
            .unwrap_or_default();
        let sparkplug_line = sparkplug
            .as_ref()
            .map(|(url, embedded, group, node)| {
                let what = if *embedded { " (embedded broker)" } else { "" };
                format!("\n  Sparkplug:  {url}{what}  spBv1.0/{group}/+/{node}/#")
            })
            .unwrap_or_default();
        println!(
            "shopbridge {} is running: {} machines, data in {}\n  live state: http://{http_addr}/api/v1/machines\n  records:    http://{http_addr}/api/v1/records\n  health:     http://{http_addr}/healthz    metrics: http://{http_addr}/metrics{opcua_line}{sparkplug_line}\nPress Ctrl-C to stop.",
            env!("CARGO_PKG_VERSION"),
            config.machines.len(),
            config.journal.dir.display()
        );
    }

    wait_for_signal(&shutdown).await?;
    let stop_began = Instant::now();
    tracing::info!("shutting down");
    shutdown.cancel();
    // Drivers stop at their next await; the pipeline drains what they sent and closes intervals.
    if tokio::time::timeout(Duration::from_millis(1200), drivers.wait())
        .await
        .is_err()
    {
        tracing::warn!("some drivers did not stop within 1.2 s; their unsent data is dropped");
    }
    if tokio::time::timeout(Duration::from_millis(1500), pipeline)
        .await
        .is_err()
    {
        tracing::error!("the pipeline did not drain within 1.5 s; records still queued are lost");
    }
    if let Some(w) = truth_writer {
        match tokio::time::timeout(Duration::from_millis(300), w.close()).await {
            Ok(Ok(st)) if st.lost > 0 => {
                tracing::error!(lost = st.lost, "ground-truth lines could not be written")
            }
            Ok(Err(e)) => tracing::error!(error = %e, "ground-truth writer failed"),
            _ => {}
        }
    }
    consumers.cancel();
    if let Some(s) = &opcua {
        s.stop();
    }
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_millis(300), tasks.wait()).await;
    let _ = tokio::time::timeout(Duration::from_millis(300), http_task).await;
    journal.close_async().await;
    let _ = std::fs::remove_file(&bridge_file);
    let js = journal.stats();
    tracing::info!(
        last_seq = js.last_seq,
        took_ms = stop_began.elapsed().as_millis() as u64,
        "stopped; journal flushed"
    );
    if opts.announce {
        println!(
            "stopped after {:.1} s; journal flushed at seq {} in {}",
            started.elapsed().as_secs_f64(),
            js.last_seq,
            config.journal.dir.display()
        );
    }
    Ok(())
}

/// The protocol drivers a configuration needs: one per SHDR adapter address and one per
/// MTConnect agent URL, each feeding every machine configured on it.
#[derive(Debug, Default)]
struct DriverSpecs {
    shdr: Vec<crate::drivers::shdr::ShdrSpec>,
    mtconnect: Vec<crate::drivers::mtconnect::AgentSpec>,
}

/// The element `is_it` finds, or a new one `make` adds at the end.
fn find_or_add<T>(v: &mut Vec<T>, is_it: impl Fn(&T) -> bool, make: impl FnOnce() -> T) -> &mut T {
    let i = match v.iter().position(is_it) {
        Some(i) => i,
        None => {
            v.push(make());
            v.len() - 1
        }
    };
    &mut v[i]
}

fn driver_specs(
    config: &Config,
    profiles: &[(MachineId, Arc<Profile>)],
) -> Result<DriverSpecs, AppError> {
    let mut specs = DriverSpecs::default();
    for (m, (_, profile)) in config.machines.iter().zip(profiles) {
        match &m.driver {
            DriverConfig::Sim { .. }
            | DriverConfig::Haas { .. }
            | DriverConfig::Modbus { .. }
            | DriverConfig::Focas { .. }
            | DriverConfig::Opcua { .. }
            | DriverConfig::Plugin { .. } => {}
            DriverConfig::Shdr {
                address,
                heartbeat,
                device,
                devices_file,
            } => {
                let spec = find_or_add(
                    &mut specs.shdr,
                    |s| s.address == *address,
                    || crate::drivers::shdr::ShdrSpec {
                        address: address.clone(),
                        ..Default::default()
                    },
                );
                spec.machines.push((m.id.clone(), device.clone()));
                if spec.heartbeat.is_none() {
                    spec.heartbeat = *heartbeat;
                }
                // What the profile says about shapes, then what a Devices file says (which
                // also gives types, so profiles can match by type).
                for (k, meta) in profile.shdr_items() {
                    spec.items.entry(k).or_insert(meta);
                }
                if let Some(path) = devices_file {
                    let fail = |reason: String| AppError::DevicesFile {
                        machine: m.id.to_string(),
                        path: path.clone(),
                        reason,
                    };
                    let xml = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
                    let devices = crate::drivers::mtconnect::xml::parse_devices(&xml)
                        .map_err(|e| fail(e.to_string()))?;
                    let wanted: Vec<_> = devices
                        .iter()
                        .filter(|d| !d.agent)
                        .filter(|d| {
                            device.as_ref().is_none_or(|want| {
                                d.name == *want || d.uuid.as_deref() == Some(want.as_str())
                            })
                        })
                        .collect();
                    if wanted.is_empty() {
                        let names: Vec<&str> = devices.iter().map(|d| d.name.as_str()).collect();
                        return Err(fail(format!(
                            "no device {:?} in it; it describes {}",
                            device.as_deref().unwrap_or("(any)"),
                            names.join(", ")
                        )));
                    }
                    for d in wanted {
                        for item in &d.items {
                            if let Some(n) = &item.name {
                                spec.items.insert(n.clone(), item.clone());
                            }
                            spec.items.insert(item.id.clone(), item.clone());
                        }
                    }
                }
            }
            DriverConfig::Mtconnect {
                url,
                device,
                interval,
                heartbeat,
            } => {
                let spec = find_or_add(
                    &mut specs.mtconnect,
                    |s| s.url == *url,
                    || crate::drivers::mtconnect::AgentSpec {
                        url: url.clone(),
                        interval: *interval,
                        heartbeat: *heartbeat,
                        machines: Vec::new(),
                    },
                );
                spec.machines.push((m.id.clone(), device.clone()));
                spec.interval = spec.interval.min(*interval);
                spec.heartbeat = spec.heartbeat.min(*heartbeat);
            }
        }
    }
    Ok(specs)
}

/// Waits for SIGINT, SIGTERM or the token.
async fn wait_for_signal(shutdown: &CancellationToken) -> Result<(), AppError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(AppError::Signal)?;
        let mut int = signal(SignalKind::interrupt()).map_err(AppError::Signal)?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = shutdown.cancelled() => {}
        }
    }
    #[cfg(not(unix))]
    {
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map_err(AppError::Signal)?,
            _ = shutdown.cancelled() => {}
        }
    }
    Ok(())
}

/// The demo's clock: starts now, runs `speed` times faster.
pub fn demo_clock(speed: f64) -> Clock {
    if (speed - 1.0).abs() < f64::EPSILON {
        Clock::system()
    } else {
        Clock::scaled(Clock::system().now(), speed)
    }
}
