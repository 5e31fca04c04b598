//! OPC UA client: reads a control that serves OPC UA itself (a SINUMERIK with its OPC UA
//! option, an umati-ready machine with an OPC 40501 MachineTool server, or another shopbridge).
//!
//! The driver never polls. After the session is up it finds its nodes — the configured node
//! ids, and everything below a browse root — and creates one subscription whose monitored
//! items report changes only: numeric values with an absolute deadband, everything else on
//! any change of value or status. Each change becomes a raw observation keyed by the node's
//! configured key or its browse path below the root (`Monitoring/Channel1/ChannelState`), with
//! the server's source timestamp and a quality from its status code. The profile does the rest.
//!
//! Connection loss is the session's to handle first (async-opcua reconnects and recreates the
//! subscription, for a few attempts); when it gives up, this driver reports the link lost,
//! waits with backoff and starts over, browsing again (the server may have restarted with a
//! different address space).

mod value;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use opcua::client::{
    ClientBuilder, DataChangeCallback, IdentityToken, Session, SessionConnectMode,
    SessionPollResult,
};
use opcua::types::{
    AttributeId, BrowseDescription, BrowseDirection, BrowseResultMask, DataChangeFilter,
    DataChangeTrigger, DeadbandType, EndpointDescription, ExtensionObject, MessageSecurityMode,
    MonitoredItemCreateRequest, MonitoringMode, MonitoringParameters, NodeClass, NodeClassMask,
    NodeId, QualifiedName, ReadValueId, ReferenceTypeId, StatusCode, TimestampsToReturn,
    UserTokenPolicy, Variant,
};
use tokio::sync::mpsc;

use super::retry::{Backoff, LogLimiter};
use super::{DataItemMeta, DriverContext, DriverCounters, DriverEvent, RawObservation};
use crate::model::{LinkStatus, MachineId, SignalId};

/// Security as configured: policy and mode must match one of the server's endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Security {
    /// `None`, `Basic256Sha256`, `Aes128_Sha256_RsaOaep`, `Aes256_Sha256_RsaPss`.
    pub policy: String,
    pub mode: SecurityMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityMode {
    None,
    Sign,
    SignAndEncrypt,
}

impl SecurityMode {
    fn ua(self) -> MessageSecurityMode {
        match self {
            SecurityMode::None => MessageSecurityMode::None,
            SecurityMode::Sign => MessageSecurityMode::Sign,
            SecurityMode::SignAndEncrypt => MessageSecurityMode::SignAndEncrypt,
        }
    }
}

/// Who the driver is to the server.
#[derive(Clone, PartialEq, Eq)]
pub enum Identity {
    Anonymous,
    User { name: String, password: String },
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Anonymous => f.write_str("Anonymous"),
            Identity::User { name, .. } => write!(f, "User({name:?}, password hidden)"),
        }
    }
}

/// One node read by id.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    /// The key the observation carries (what the profile matches).
    pub key: String,
    /// `ns=2;s=/Channel/State/chanStatus`, `i=2258` …, as written.
    pub node: String,
    /// Absolute deadband for this node (numeric nodes only); `None` uses the driver's.
    pub deadband: Option<f64>,
}

/// Where browsing starts and how far it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowseSpec {
    /// A node id (`ns=1;s=m1`), or a path of browse names from the Objects folder
    /// (`Machines/Mill 1`), names compared without their namespace.
    pub root: String,
    /// Levels below the root.
    pub depth: usize,
    /// Variables subscribed at most (a wrong root on a big server must not subscribe to it all).
    pub max_items: usize,
}

/// One OPC UA server as the driver reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct OpcuaSpec {
    /// `opc.tcp://host:4840[/path]`.
    pub endpoint: String,
    pub security: Security,
    pub identity: Identity,
    /// The client's certificate store (own key pair, trusted and rejected server certificates).
    pub pki_dir: PathBuf,
    /// Trust any server certificate (test benches); otherwise it must be in `pki_dir/trusted`.
    pub trust_server: bool,
    pub nodes: Vec<NodeSpec>,
    pub browse: Option<BrowseSpec>,
    /// How often the server sends what changed.
    pub publishing_interval: Duration,
    /// How often the server samples each item.
    pub sampling_interval: Duration,
    /// Absolute deadband of numeric nodes without their own.
    pub deadband: f64,
    /// Service call timeout.
    pub timeout: Duration,
}

/// Variables a browse skips: metadata of other variables, not machine data.
const METADATA_NAMES: [&str; 12] = [
    "EngineeringUnits",
    "EURange",
    "InstrumentRange",
    "EnumStrings",
    "EnumValues",
    "ValuePrecision",
    "Definition",
    "NodeVersion",
    "TrueState",
    "FalseState",
    "ValueAsText",
    "DefaultInstanceBrowseName",
];

/// Built-in numeric data types (`i=2`…`i=11`, Duration, Number, Integer, UInteger): the ones
/// that take a deadband.
fn is_numeric(data_type: &NodeId) -> bool {
    data_type.namespace == 0
        && matches!(data_type.as_u32(), Some(2..=11) | Some(26..=28) | Some(290))
}

/// A node the subscription reports, with what observations of it carry.
#[derive(Debug)]
struct Item {
    key: SignalId,
    meta: Arc<DataItemMeta>,
    deadband: Option<f64>,
}

/// Runs until shutdown, feeding the context's first machine.
pub async fn run(spec: OpcuaSpec, ctx: DriverContext) {
    let Some(machine) = ctx.machines.first().cloned() else {
        tracing::error!(endpoint = %spec.endpoint, "OPC UA driver has no machine to feed; not started");
        return;
    };
    let mut backoff = Backoff::new(
        super::poll::BACKOFF_START,
        super::poll::BACKOFF_MAX,
        0.8..=1.2,
    );
    let mut log = LogLimiter::new(Duration::from_secs(10));
    let mut lost_reported = false;
    loop {
        let why = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            r = session(&spec, &ctx, &machine, &mut lost_reported, &mut backoff) => match r {
                Ok(()) => return,
                Err(why) => why,
            },
        };
        if let Some(more) = log.allow() {
            tracing::warn!(%machine, endpoint = %spec.endpoint, reason = %why, failed_since_last_log = more, "OPC UA link down; retrying with backoff");
        }
        if !ctx
            .link_down(&machine, why, &mut lost_reported, &mut backoff)
            .await
        {
            return;
        }
    }
}

fn client(spec: &OpcuaSpec) -> Result<opcua::client::Client, String> {
    ClientBuilder::new()
        .application_name("shopbridge")
        .application_uri("urn:shopbridge:client")
        .product_uri("urn:shopbridge")
        // A key pair only when security needs one (making it takes a while, once per pki_dir).
        .create_sample_keypair(spec.security.mode != SecurityMode::None)
        .trust_server_certs(spec.trust_server)
        .pki_dir(spec.pki_dir.clone())
        .session_retry_limit(3)
        .session_retry_initial(Duration::from_millis(500))
        .session_retry_max(Duration::from_secs(5))
        .request_timeout(spec.timeout)
        .session_name("shopbridge")
        .client()
        .map_err(|e| format!("OPC UA client settings: {}", e.join("; ")))
}

/// One session, from connect to loss: `Ok` only on shutdown.
async fn session(
    spec: &OpcuaSpec,
    ctx: &DriverContext,
    machine: &MachineId,
    lost_reported: &mut bool,
    backoff: &mut Backoff,
) -> Result<(), String> {
    // The first connect may make the client's key pair: off the async threads.
    let settings = spec.clone();
    let mut client = tokio::task::spawn_blocking(move || client(&settings))
        .await
        .map_err(|e| format!("OPC UA client setup failed: {e}"))??;
    let endpoint: EndpointDescription = (
        spec.endpoint.as_str(),
        spec.security.policy.as_str(),
        spec.security.mode.ua(),
        UserTokenPolicy::anonymous(),
    )
        .into();
    let identity = match &spec.identity {
        Identity::Anonymous => IdentityToken::Anonymous,
        Identity::User { name, password } => IdentityToken::new_user_name(name, password.as_str()),
    };
    let (session, event_loop) = tokio::time::timeout(
        spec.timeout.max(Duration::from_secs(5)),
        client.connect_to_matching_endpoint(endpoint, identity),
    )
    .await
    .map_err(|_| {
        format!(
            "no answer from {} within {} s",
            spec.endpoint,
            spec.timeout.max(Duration::from_secs(5)).as_secs()
        )
    })?
    .map_err(|e| connect_error(spec, &e.to_string()))?;

    // The event loop drives the session; its results say when the link is lost and back.
    let (status_tx, mut status_rx) =
        mpsc::unbounded_channel::<Result<SessionPollResult, StatusCode>>();
    let pump = tokio::spawn(async move {
        let stream = event_loop.enter();
        futures_util::pin_mut!(stream);
        while let Some(r) = stream.next().await {
            let end = r.is_err();
            let relevant = matches!(
                r,
                Err(_)
                    | Ok(SessionPollResult::ConnectionLost(_))
                    | Ok(SessionPollResult::Reconnected(_))
                    | Ok(SessionPollResult::ReconnectFailed(_))
            );
            if relevant && status_tx.send(r).is_err() {
                return;
            }
            if end {
                return;
            }
        }
    });
    let guard = AbortOnDrop(pump);

    let connected = tokio::time::timeout(spec.timeout.max(Duration::from_secs(5)), async {
        loop {
            tokio::select! {
                _ = session.wait_for_connection() => return Ok(()),
                r = status_rx.recv() => match r {
                    Some(Err(s)) | Some(Ok(SessionPollResult::ReconnectFailed(s))) => return Err(connect_error(spec, &s.to_string())),
                    None => return Err(format!("the session to {} ended", spec.endpoint)),
                    _ => {}
                },
            }
        }
    })
    .await
    .map_err(|_| format!("no session with {} within {} s", spec.endpoint, spec.timeout.max(Duration::from_secs(5)).as_secs()))?;
    connected?;

    let items = resolve(spec, &session, ctx).await?;
    if items.is_empty() {
        let _ = session.disconnect().await;
        return Err(format!(
            "nothing to read at {}: no configured node exists and the browse found no variables",
            spec.endpoint
        ));
    }
    let (obs_tx, mut obs_rx) = mpsc::unbounded_channel::<DriverEvent>();
    let subscribed = subscribe(spec, &session, ctx, machine, items, obs_tx).await;
    let count = match subscribed {
        Ok(n) => n,
        Err(e) => {
            let _ = session.disconnect().await;
            return Err(e);
        }
    };
    tracing::info!(%machine, endpoint = %spec.endpoint, items = count, "OPC UA subscription created");
    if !ctx
        .link(
            machine,
            LinkStatus::Connected,
            format!("subscribed to {count} nodes at {}", spec.endpoint),
        )
        .await
    {
        return Ok(());
    }
    *lost_reported = false;
    backoff.reset();

    // Forward data changes in batches; follow the session's health. The first connect's own
    // `Reconnected(NewSession)` may still be queued: only a new session after a loss means
    // the server restarted.
    let mut saw_loss = false;
    let mut batch: Vec<DriverEvent> = Vec::new();
    let result = loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => break Ok(()),
            ev = obs_rx.recv() => {
                let Some(ev) = ev else { break Err("subscription closed".to_string()) };
                batch.push(ev);
                while batch.len() < 1024 {
                    match obs_rx.try_recv() {
                        Ok(ev) => batch.push(ev),
                        Err(_) => break,
                    }
                }
                DriverCounters::add(&ctx.counters.messages, batch.len() as u64);
                if !ctx.send(std::mem::take(&mut batch)).await {
                    break Ok(());
                }
            }
            st = status_rx.recv() => match st {
                Some(Ok(SessionPollResult::ConnectionLost(s))) => {
                    saw_loss = true;
                    DriverCounters::add(&ctx.counters.link_errors, 1);
                    tracing::warn!(%machine, endpoint = %spec.endpoint, status = %s, "OPC UA connection lost; the session reconnects");
                    if !*lost_reported {
                        if !ctx.link(machine, LinkStatus::Lost, format!("connection to {} lost: {s}", spec.endpoint)).await {
                            break Ok(());
                        }
                        *lost_reported = true;
                    }
                }
                Some(Ok(SessionPollResult::Reconnected(SessionConnectMode::NewSession(_)))) if saw_loss => {
                    // The server lost the session (it restarted): its address space may have
                    // changed too, so browse and subscribe again from scratch.
                    break Err(format!("{} restarted; reading it again", spec.endpoint));
                }
                // The first connect's own event (see above) is not a reconnect.
                Some(Ok(SessionPollResult::Reconnected(_))) if !saw_loss => {}
                Some(Ok(SessionPollResult::Reconnected(mode))) => {
                    tracing::info!(%machine, endpoint = %spec.endpoint, ?mode, "OPC UA session reconnected");
                    if !ctx.link(machine, LinkStatus::Connected, format!("reconnected to {}", spec.endpoint)).await {
                        break Ok(());
                    }
                    *lost_reported = false;
                }
                Some(Ok(SessionPollResult::ReconnectFailed(s))) => {
                    tracing::debug!(%machine, endpoint = %spec.endpoint, status = %s, "OPC UA reconnect attempt failed");
                }
                Some(Ok(_)) => {}
                Some(Err(s)) => break Err(format!("the session to {} gave up: {s}", spec.endpoint)),
                None => break Err(format!("the session to {} ended", spec.endpoint)),
            },
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), session.disconnect()).await;
    drop(guard);
    result
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn connect_error(spec: &OpcuaSpec, e: &str) -> String {
    let hint = if e.contains("BadSecurityPolicyRejected")
        || e.contains("Cannot find matching endpoint")
    {
        format!(
            " (the server offers no endpoint with security policy {} and mode {:?}; see its endpoint list)",
            spec.security.policy, spec.security.mode
        )
    } else if e.contains("BadIdentityTokenRejected")
        || e.contains("BadUserAccessDenied")
        || e.contains("BadIdentityTokenInvalid")
    {
        " (the server refused the user; check user and password)".to_string()
    } else if e.contains("BadCertificate") || e.contains("BadSecurityChecksFailed") {
        format!(
            " (certificate not trusted: move the server's certificate from {}/rejected to {}/trusted, and trust the client's on the server)",
            spec.pki_dir.display(),
            spec.pki_dir.display()
        )
    } else {
        String::new()
    };
    format!("cannot connect to {}: {e}{hint}", spec.endpoint)
}

/// The nodes to subscribe to: configured ones (checked to exist) and everything browsed.
async fn resolve(
    spec: &OpcuaSpec,
    session: &Session,
    ctx: &DriverContext,
) -> Result<Vec<(NodeId, Item)>, String> {
    let mut out: Vec<(NodeId, Item)> = Vec::new();
    let mut seen: HashSet<NodeId> = HashSet::new();
    for n in &spec.nodes {
        let id: NodeId = n
            .node
            .parse()
            .map_err(|_| format!("node id {:?} is not an OPC UA node id", n.node))?;
        if seen.insert(id.clone()) {
            out.push((
                id.clone(),
                Item {
                    key: SignalId::new(&n.key),
                    meta: Arc::new(DataItemMeta {
                        id: n.node.clone(),
                        name: Some(n.key.clone()),
                        item_type: last_segment(&n.key).to_string(),
                        ..Default::default()
                    }),
                    deadband: n.deadband,
                },
            ));
        }
    }
    if let Some(b) = &spec.browse {
        let root = find_root(session, &b.root).await?;
        let found = browse(session, &root, b).await?;
        if found.len() >= b.max_items {
            tracing::warn!(endpoint = %spec.endpoint, root = %b.root, max_items = b.max_items, "browse stopped at max_items; subscribe to fewer nodes by naming a deeper root");
        }
        for (id, path, parent) in found {
            if seen.insert(id.clone()) {
                let name = last_segment(&path).to_string();
                out.push((
                    id.clone(),
                    Item {
                        key: SignalId::new(&path),
                        meta: Arc::new(DataItemMeta {
                            id: id.to_string(),
                            name: Some(name.clone()),
                            item_type: name,
                            component: parent,
                            ..Default::default()
                        }),
                        deadband: None,
                    },
                ));
            }
        }
    }
    // Numeric types take the deadband; read every node's DataType (also: does it exist?).
    let reads: Vec<ReadValueId> = out
        .iter()
        .map(|(id, _)| ReadValueId {
            node_id: id.clone(),
            attribute_id: AttributeId::DataType as u32,
            ..Default::default()
        })
        .collect();
    let mut types = Vec::with_capacity(reads.len());
    for chunk in reads.chunks(500) {
        let r = session
            .read(chunk, TimestampsToReturn::Neither, 0.0)
            .await
            .map_err(|e| format!("reading node data types at {}: {e}", spec.endpoint))?;
        types.extend(r);
    }
    let mut kept = Vec::with_capacity(out.len());
    for ((id, mut item), dv) in out.into_iter().zip(types) {
        match dv.value {
            Some(Variant::NodeId(t)) => {
                item.deadband = if is_numeric(&t) {
                    Some(item.deadband.unwrap_or(spec.deadband))
                } else {
                    None
                };
                kept.push((id, item));
            }
            _ => {
                DriverCounters::add(&ctx.counters.bad_input, 1);
                let status = dv.status.map(|s| s.to_string()).unwrap_or_default();
                tracing::warn!(endpoint = %spec.endpoint, node = %id, key = %item.key, %status, "node not readable on the server; skipped");
            }
        }
    }
    Ok(kept)
}

fn last_segment(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn browse_description(node: &NodeId) -> BrowseDescription {
    BrowseDescription {
        node_id: node.clone(),
        browse_direction: BrowseDirection::Forward,
        reference_type_id: ReferenceTypeId::HierarchicalReferences.into(),
        include_subtypes: true,
        node_class_mask: (NodeClassMask::OBJECT | NodeClassMask::VARIABLE).bits(),
        result_mask: BrowseResultMask::All as u32,
    }
}

/// Children of `node`: (id, browse name, class).
async fn children(
    session: &Session,
    node: &NodeId,
) -> Result<Vec<(NodeId, QualifiedName, NodeClass)>, String> {
    let mut out = Vec::new();
    let results = session
        .browse(&[browse_description(node)], 1000, None)
        .await
        .map_err(|e| format!("browsing {node}: {e}"))?;
    let mut next = None;
    for r in results {
        if !r.status_code.is_good() {
            return Err(format!("browsing {node}: {}", r.status_code));
        }
        for rd in r.references.unwrap_or_default() {
            out.push((rd.node_id.node_id, rd.browse_name, rd.node_class));
        }
        if !r.continuation_point.is_null() {
            next = Some(r.continuation_point);
        }
    }
    while let Some(cp) = next.take() {
        let results = session
            .browse_next(false, &[cp])
            .await
            .map_err(|e| format!("browsing {node} (next): {e}"))?;
        for r in results {
            for rd in r.references.unwrap_or_default() {
                out.push((rd.node_id.node_id, rd.browse_name, rd.node_class));
            }
            if !r.continuation_point.is_null() {
                next = Some(r.continuation_point);
            }
        }
    }
    Ok(out)
}

/// A node id, or a browse-name path from the Objects folder.
async fn find_root(session: &Session, root: &str) -> Result<NodeId, String> {
    if let Ok(id) = root.parse::<NodeId>() {
        return Ok(id);
    }
    let mut at = NodeId::objects_folder_id();
    let mut walked = String::from("Objects");
    for name in root.split('/').filter(|s| !s.is_empty()) {
        let kids = children(session, &at).await?;
        let Some((id, _, _)) = kids.iter().find(|(_, q, _)| q.name.as_ref() == name) else {
            let mut names: Vec<String> = kids.iter().map(|(_, q, _)| q.name.to_string()).collect();
            names.truncate(20);
            return Err(format!(
                "browse root {root:?}: {walked} has no child {name:?} (it has: {})",
                names.join(", ")
            ));
        };
        at = id.clone();
        walked.push('/');
        walked.push_str(name);
    }
    Ok(at)
}

/// Every variable below `root` (depth first, each node once): (id, path, parent's name).
async fn browse(
    session: &Session,
    root: &NodeId,
    b: &BrowseSpec,
) -> Result<Vec<(NodeId, String, Option<String>)>, String> {
    let mut out = Vec::new();
    let mut visited: HashSet<NodeId> = HashSet::from([root.clone()]);
    // (node, path, depth, own name)
    let mut stack: Vec<(NodeId, String, usize, Option<String>)> =
        vec![(root.clone(), String::new(), 0, None)];
    while let Some((node, path, depth, name)) = stack.pop() {
        if depth >= b.depth || out.len() >= b.max_items {
            continue;
        }
        let mut kids = children(session, &node).await?;
        // Depth first in browse order: push in reverse.
        kids.reverse();
        for (id, q, class) in kids {
            if !visited.insert(id.clone()) {
                continue;
            }
            let child_name = q.name.to_string();
            if METADATA_NAMES.contains(&child_name.as_str()) {
                continue;
            }
            let child_path = if path.is_empty() {
                child_name.clone()
            } else {
                format!("{path}/{child_name}")
            };
            if class == NodeClass::Variable && out.len() < b.max_items {
                out.push((id.clone(), child_path.clone(), name.clone()));
            }
            stack.push((id, child_path, depth + 1, Some(child_name)));
        }
    }
    // The stack visits children in order, but collected variables of a parent come before
    // its sub-objects' variables; order by path so that keys are stable to read.
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

fn filter(deadband: Option<f64>) -> ExtensionObject {
    let (deadband_type, deadband_value) = match deadband {
        Some(d) if d > 0.0 => (DeadbandType::Absolute as u32, d),
        _ => (DeadbandType::None as u32, 0.0),
    };
    ExtensionObject::from_message(DataChangeFilter {
        trigger: DataChangeTrigger::StatusValue,
        deadband_type,
        deadband_value,
    })
}

/// Creates the subscription and its items; data changes go to `tx`. Returns the items made.
async fn subscribe(
    spec: &OpcuaSpec,
    session: &Arc<Session>,
    ctx: &DriverContext,
    machine: &MachineId,
    items: Vec<(NodeId, Item)>,
    tx: mpsc::UnboundedSender<DriverEvent>,
) -> Result<usize, String> {
    let by_node: Arc<HashMap<NodeId, Item>> = Arc::new(items.into_iter().collect());
    let lookup = by_node.clone();
    let clock = ctx.clock.clone();
    let machine_cb = machine.clone();
    let counters = ctx.counters.clone();
    let callback = DataChangeCallback::new(move |dv, mi| {
        let Some(item) = lookup.get(&mi.item_to_monitor().node_id) else {
            return;
        };
        let (v, quality) = value::from_data_value(&dv);
        if let value::Converted::Undecodable(what) = &v {
            DriverCounters::add(&counters.bad_input, 1);
            tracing::debug!(key = %item.key, what, "OPC UA value of a type shopbridge does not read; sent as Bad");
        }
        let _ = tx.send(DriverEvent::Observation(RawObservation {
            machine: machine_cb.clone(),
            key: item.key.clone(),
            value: v.into_value(),
            quality,
            source_time: value::source_time(&dv),
            received: clock.now(),
            meta: Some(item.meta.clone()),
        }));
    });
    let subscription = session
        .create_subscription(
            spec.publishing_interval,
            // Lifetime and keep-alive counts: the server keeps the subscription 60 intervals
            // without a publish request, and says it is alive at least every 10.
            60,
            10,
            0,
            0,
            true,
            callback,
        )
        .await
        .map_err(|e| format!("creating a subscription at {}: {e}", spec.endpoint))?;
    let sampling = spec.sampling_interval.as_secs_f64() * 1000.0;
    let mut requests: Vec<(NodeId, Option<f64>)> = by_node
        .iter()
        .map(|(id, i)| (id.clone(), i.deadband))
        .collect();
    requests.sort_by_key(|a| a.0.to_string());
    let make = |id: &NodeId, deadband: Option<f64>| MonitoredItemCreateRequest {
        item_to_monitor: ReadValueId {
            node_id: id.clone(),
            attribute_id: AttributeId::Value as u32,
            ..Default::default()
        },
        monitoring_mode: MonitoringMode::Reporting,
        requested_parameters: MonitoringParameters {
            sampling_interval: sampling,
            filter: filter(deadband),
            queue_size: 10,
            discard_oldest: true,
            ..Default::default()
        },
    };
    let mut created = 0;
    let mut retry_plain = Vec::new();
    for chunk in requests.chunks(500) {
        let results = session
            .create_monitored_items(
                subscription,
                TimestampsToReturn::Both,
                chunk.iter().map(|(id, d)| make(id, *d)).collect(),
            )
            .await
            .map_err(|e| format!("creating monitored items at {}: {e}", spec.endpoint))?;
        for ((id, deadband), r) in chunk.iter().zip(results) {
            let s = r.result.status_code;
            if s.is_good() {
                created += 1;
            } else if deadband.is_some()
                && (s == StatusCode::BadFilterNotAllowed
                    || s == StatusCode::BadMonitoredItemFilterUnsupported
                    || s == StatusCode::BadDeadbandFilterInvalid)
            {
                retry_plain.push(id.clone());
            } else {
                DriverCounters::add(&ctx.counters.bad_input, 1);
                tracing::warn!(endpoint = %spec.endpoint, node = %id, status = %s, "the server refused to monitor a node; skipped");
            }
        }
    }
    if !retry_plain.is_empty() {
        tracing::info!(endpoint = %spec.endpoint, nodes = retry_plain.len(), "the server takes no deadband on some nodes; monitoring them on any change");
        let results = session
            .create_monitored_items(
                subscription,
                TimestampsToReturn::Both,
                retry_plain.iter().map(|id| make(id, None)).collect(),
            )
            .await
            .map_err(|e| format!("creating monitored items at {}: {e}", spec.endpoint))?;
        created += results
            .iter()
            .filter(|r| r.result.status_code.is_good())
            .count();
    }
    if created == 0 {
        return Err(format!(
            "the server at {} refused every monitored item",
            spec.endpoint
        ));
    }
    Ok(created)
}
