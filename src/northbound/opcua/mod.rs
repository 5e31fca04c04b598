//! The northbound OPC UA server (async-opcua): every machine an OPC 40501 `MachineToolType`
//! under Machinery's `Objects/Machines`, values pushed from the journal, methods that become
//! journal records, and the security a plant network needs.
//!
//! - [`instantiate`]: instances from the companion types' declarations;
//! - [`space`]: the layout of one machine and the node ids the feed writes;
//! - [`manager`]: loads the NodeSets, builds the machines, turns method calls into commands;
//! - [`feed`]: the journal consumer that keeps values current and raises events;
//! - [`auth`]: users, password hashes, roles.
//!
//! Security: endpoints Basic256Sha256 and Aes256Sha256RsaPss, each with Sign and
//! SignAndEncrypt, and None only where `[opcua] security_none = true`. The application
//! certificate is made on first start in `<data dir>/pki/own`; client certificates are trusted
//! when their file is in `pki/trusted/certs` (rejected ones land in `pki/rejected`).

pub mod auth;
pub mod feed;
pub mod instantiate;
pub mod manager;
pub mod space;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use opcua::crypto::SecurityPolicy;
use opcua::nodes::{NodeSet2Import, NodeSetImport};
use opcua::server::node_manager::memory::InMemoryNodeManagerBuilder;
use opcua::server::{ServerBuilder, ServerEndpoint, ServerHandle, ServerUserToken};
use opcua::types::MessageSecurityMode;
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{MachineConfig, OpcuaConfig};
use crate::context::commands::Commands;
use crate::journal::Journal;
use crate::model::Taxonomy;
use crate::northbound::live::{LiveMachine, LiveView};

/// The companion NodeSets, in load order, with their SHA-256 (the list `nodesets/fetch` uses).
const COMPANIONS: &str = include_str!("../../../nodesets/companions.txt");
/// shopbridge's own model, built into the binary.
const OWN_NODESET: &str = include_str!("../../../nodesets/shopbridge.NodeSet2.xml");

#[derive(Debug, Error)]
pub enum OpcuaError {
    #[error(
        "the OPC UA companion NodeSet {file} is missing from {dir}: run nodesets/fetch (or set [opcua] nodesets_dir)"
    )]
    NodeSetMissing { dir: PathBuf, file: String },
    #[error(
        "the OPC UA companion NodeSet {path} has SHA-256 {found}, expected {expected}: run nodesets/fetch to replace it"
    )]
    NodeSetWrong {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("cannot read the NodeSet {path}: {why}")]
    NodeSetUnreadable { path: PathBuf, why: String },
    #[error("cannot listen for OPC UA on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the OPC UA server cannot start: {0}")]
    Server(String),
}

/// Where the companion NodeSets are: the configured directory, else the first of
/// `./nodesets/opcfoundation` and `<prefix>/share/shopbridge/nodesets` (beside the binary's
/// `bin/`) that exists.
pub fn nodesets_dir(configured: Option<&Path>) -> PathBuf {
    if let Some(d) = configured {
        return d.to_path_buf();
    }
    let mut candidates = vec![PathBuf::from("nodesets/opcfoundation")];
    if let Ok(exe) = std::env::current_exe() {
        if let Some(prefix) = exe.parent().and_then(Path::parent) {
            candidates.push(prefix.join("share/shopbridge/nodesets"));
        }
    }
    candidates
        .iter()
        .find(|d| d.is_dir())
        .cloned()
        .unwrap_or_else(|| candidates.swap_remove(0))
}

/// The companion files, verified, then ours.
fn load_nodesets(dir: &Path) -> Result<Vec<Box<dyn NodeSetImport>>, OpcuaError> {
    let mut out: Vec<Box<dyn NodeSetImport>> = Vec::new();
    for line in COMPANIONS.lines().filter(|l| !l.starts_with('#')) {
        let mut parts = line.split_whitespace();
        let (Some(file), Some(expected)) = (parts.next(), parts.next()) else {
            continue;
        };
        let path = dir.join(file);
        let bytes = std::fs::read(&path).map_err(|_| OpcuaError::NodeSetMissing {
            dir: dir.to_path_buf(),
            file: file.to_string(),
        })?;
        let found = hex(&Sha256::digest(&bytes));
        if found != expected {
            return Err(OpcuaError::NodeSetWrong {
                path,
                found,
                expected: expected.to_string(),
            });
        }
        let text = String::from_utf8_lossy(&bytes);
        let import = NodeSet2Import::new_str("en", &text, vec![]).map_err(|e| {
            OpcuaError::NodeSetUnreadable {
                path: path.clone(),
                why: e.to_string(),
            }
        })?;
        out.push(Box::new(import));
    }
    let own = NodeSet2Import::new_str("en", OWN_NODESET, vec![]).map_err(|e| {
        OpcuaError::NodeSetUnreadable {
            path: PathBuf::from("shopbridge.NodeSet2.xml (built in)"),
            why: e.to_string(),
        }
    })?;
    out.push(Box::new(own));
    Ok(out)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A running OPC UA server.
pub struct OpcuaServer {
    /// `opc.tcp://host:port/`
    pub endpoint: String,
    handle: ServerHandle,
}

impl OpcuaServer {
    /// Stops accepting requests and closes sessions.
    pub fn stop(&self) {
        self.handle.cancel();
    }
}

/// What the server needs from the rest of the bridge.
pub struct Wiring {
    pub journal: Journal,
    pub commands: Commands,
    pub taxonomy: Taxonomy,
    /// Each machine with its profile's signal ids.
    pub machines: Vec<(MachineConfig, Vec<String>)>,
    pub data_dir: PathBuf,
    pub telemetry: Arc<crate::northbound::http::Telemetry>,
}

/// The application's private key is for this process only: `pki/private` 0700, its files 0600
/// (the library creates them with the process umask).
fn protect_private_key(pki: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let private = pki.join("private");
    let mut paths = vec![(private.clone(), 0o700)];
    if let Ok(entries) = std::fs::read_dir(&private) {
        paths.extend(entries.flatten().map(|e| (e.path(), 0o600)));
    }
    for (path, mode) in paths {
        if let Err(e) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)) {
            tracing::warn!(path = %path.display(), error = %e, "cannot restrict the permissions of the OPC UA private key");
        }
    }
}

/// The host name clients should use: configured, else this machine's name, else the
/// listen address.
fn host_name(cfg: &OpcuaConfig) -> String {
    if let Some(h) = &cfg.hostname {
        return h.clone();
    }
    if !cfg.listen.ip().is_unspecified() {
        return cfg.listen.ip().to_string();
    }
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc == 0 {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        if let Ok(s) = std::str::from_utf8(&buf[..end]) {
            if !s.is_empty() {
                return s.to_string();
            }
        }
    }
    "localhost".to_string()
}

/// Everything about the server that needs no waiting: NodeSets, node manager, endpoints,
/// users, limits. (Kept out of `start`'s awaits: the library's builders are not `Send`.)
fn configure(
    cfg: &OpcuaConfig,
    wiring: &Wiring,
    host: &str,
    port: u16,
    endpoint: &str,
    product_uri: String,
    shutdown: CancellationToken,
) -> Result<
    (
        opcua::server::Server,
        ServerHandle,
        Arc<OnceLock<manager::Built>>,
    ),
    OpcuaError,
> {
    let dir = nodesets_dir(cfg.nodesets_dir.as_deref());
    let imports = load_nodesets(&dir)?;
    let users = Arc::new(auth::Users::new(
        &cfg.users,
        cfg.anonymous,
        wiring.telemetry.clone(),
    ));
    if cfg.users.is_empty() && !cfg.anonymous {
        tracing::warn!(
            "[opcua] has no users and anonymous access is off: no client can log in (add [[opcua.users]] or set anonymous = true)"
        );
    }
    let built = Arc::new(OnceLock::new());
    let manager = manager::Builder {
        imports,
        machines: wiring.machines.clone(),
        taxonomy: wiring.taxonomy.clone(),
        product_uri: product_uri.clone(),
        commands: wiring.commands.clone(),
        users: users.clone(),
        built: built.clone(),
        telemetry: wiring.telemetry.clone(),
    };

    let mut token_ids: Vec<String> = cfg
        .users
        .iter()
        .map(|u| format!("user:{}", u.name))
        .collect();
    if cfg.anonymous {
        token_ids.push(opcua::server::ANONYMOUS_USER_TOKEN_ID.to_string());
    }
    let mut builder = ServerBuilder::new()
        .application_name("shopbridge")
        .application_uri(format!("urn:shopbridge:{host}"))
        .product_uri(product_uri)
        .host(host)
        .port(port)
        .pki_dir(wiring.data_dir.join("pki"))
        .create_sample_keypair(true)
        .trust_client_certs(false)
        .discovery_urls(vec![endpoint.to_string()])
        .with_authenticator(users.clone())
        .with_node_manager(InMemoryNodeManagerBuilder::new(manager))
        .token(shutdown.child_token())
        // Subscriptions are checked every 10 ms (the library's default, 100 ms, would add up
        // to a whole publishing interval of delay to every pushed value).
        .subscription_poll_interval_ms(10)
        .diagnostics_enabled(true);
    for u in &cfg.users {
        builder = builder.add_user_token(
            format!("user:{}", u.name),
            ServerUserToken::user_pass(u.name.clone(), u.password_hash.clone()),
        );
    }
    let secure = [
        (SecurityPolicy::Basic256Sha256, MessageSecurityMode::Sign),
        (
            SecurityPolicy::Basic256Sha256,
            MessageSecurityMode::SignAndEncrypt,
        ),
        (
            SecurityPolicy::Aes256Sha256RsaPss,
            MessageSecurityMode::Sign,
        ),
        (
            SecurityPolicy::Aes256Sha256RsaPss,
            MessageSecurityMode::SignAndEncrypt,
        ),
    ];
    for (policy, mode) in secure {
        builder = builder.add_endpoint(
            format!("{policy}_{mode}"),
            ServerEndpoint::new("/", policy, mode, &token_ids),
        );
    }
    if cfg.security_none {
        let mut none = ServerEndpoint::new_none("/", &token_ids);
        // Passwords on the open endpoint are still encrypted with the server's certificate.
        none.password_security_policy = Some(SecurityPolicy::Basic256Sha256.to_string());
        builder = builder.add_endpoint("none", none);
    }
    // A SCADA client creates thousands of monitored items per call and a publish response can
    // carry thousands of notifications: the library's defaults (arrays of 1,000, messages of
    // 320 KiB) would refuse both.
    builder = builder
        .max_array_length(cfg.max_monitored_items.max(100_000))
        .max_message_size(64 << 20)
        .max_chunk_count(1024);
    let limits = builder.limits_mut();
    let min_ms = cfg.min_publishing_interval.as_secs_f64() * 1000.0;
    limits.subscriptions.min_publishing_interval_ms = min_ms;
    limits.subscriptions.min_sampling_interval_ms = min_ms;
    limits.subscriptions.max_monitored_items_per_sub = cfg.max_monitored_items;
    limits.operational.max_monitored_items_per_call = cfg.max_monitored_items.min(100_000);
    limits.subscriptions.max_queued_notifications = cfg.max_monitored_items.max(20_000) * 2;
    limits.subscriptions.max_notifications_per_publish = 0;
    limits.subscriptions.max_subscriptions_per_session = 100;
    limits.max_sessions = 100;
    let (server, handle) = builder.build().map_err(OpcuaError::Server)?;
    protect_private_key(&wiring.data_dir.join("pki"));
    Ok((server, handle, built))
}

/// Starts the server: binds, loads the NodeSets, builds the machines, and spawns the server
/// and its journal feed on `tasks`. Both stop on `shutdown`.
pub async fn start(
    cfg: &OpcuaConfig,
    wiring: Wiring,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) -> Result<OpcuaServer, OpcuaError> {
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| OpcuaError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let port = listener
        .local_addr()
        .map_err(|source| OpcuaError::Bind {
            addr: cfg.listen,
            source,
        })?
        .port();
    let host = host_name(cfg);
    let endpoint = format!("opc.tcp://{host}:{port}/");
    let product_uri = "urn:shopbridge".to_string();

    let (server, handle, built) = configure(
        cfg,
        &wiring,
        &host,
        port,
        &endpoint,
        product_uri,
        shutdown.clone(),
    )?;

    let subscriptions = server.subscriptions();
    let node_managers = handle.node_managers().clone();
    tasks.spawn({
        let endpoint = endpoint.clone();
        async move {
            if let Err(e) = server.run_with(listener).await {
                tracing::error!(error = %e, endpoint = %endpoint, "the OPC UA server stopped");
            }
        }
    });
    // The manager builds the machines when the server initializes its node managers.
    let mut waited = 0;
    let built = loop {
        if let Some(b) = built.get() {
            break b;
        }
        waited += 1;
        if waited > 600 {
            return Err(OpcuaError::Server(
                "the address space was not built within 60 s".into(),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    {
        let mut tree = handle.type_tree().write();
        let event_type = built.ns.message_event_type();
        for (id, name, class) in &built.event_fields {
            if opcua::nodes::TypeTree::find_type_prop_by_browse_path(
                &*tree,
                &event_type,
                std::slice::from_ref(name),
            )
            .is_none()
            {
                tree.add_type_property(id, &event_type, &[name], *class);
            }
        }
    }
    let Some(mgr) = node_managers.get_of_type::<manager::ShopManager>() else {
        return Err(OpcuaError::Server(
            "the shopbridge node manager is missing".into(),
        ));
    };
    let view = LiveView::new(wiring.machines.iter().map(|(m, _)| {
        LiveMachine::new(
            m.id.clone(),
            m.name.clone(),
            m.profile.clone(),
            m.driver.type_name().to_string(),
        )
    }));
    let target = feed::Target {
        space: mgr.address_space().clone(),
        subscriptions,
        ns: built.ns,
        machines: built.machines.clone(),
        states: built.states.clone(),
        telemetry: wiring.telemetry.clone(),
    };
    tasks.spawn(feed::run(wiring.journal, view, target, shutdown));
    tracing::info!(
        endpoint = %endpoint,
        machines = wiring.machines.len(),
        security_none = cfg.security_none,
        anonymous = cfg.anonymous,
        users = cfg.users.len(),
        "OPC UA server listening"
    );
    Ok(OpcuaServer { endpoint, handle })
}
