//! The embedded MQTT broker (rumqttd, MQTT 3.1.1) for the demo and for `[mqtt] embedded = true`:
//! a bridge with no broker of its own still publishes Sparkplug on 127.0.0.1.
//!
//! rumqttd runs its router and server on threads of its own; they live as long as the process
//! (rumqttd has no stop). Loopback only: a broker other machines can reach needs
//! authentication and TLS, which belong to a real broker (Mosquitto, EMQX, HiveMQ).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

/// Why the embedded broker did not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "cannot listen on {addr} for the embedded MQTT broker: {source} (another broker running? pick another port with --mqtt-port, or use it with --mqtt-url mqtt://127.0.0.1:{port})",
        port = addr.port()
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the embedded MQTT broker could not start: {0}")]
    Start(String),
}

/// Starts rumqttd on 127.0.0.1:`port` (0 picks a free port) and returns the port once the
/// broker accepts connections.
pub fn start(port: u16) -> Result<u16, BrokerError> {
    let want = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    // rumqttd reports a failed bind only in its log, on its own thread: try the port first.
    let probe =
        TcpListener::bind(want).map_err(|source| BrokerError::Bind { addr: want, source })?;
    let addr = probe
        .local_addr()
        .map_err(|source| BrokerError::Bind { addr: want, source })?;
    drop(probe);
    let config = config(addr);
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "the embedded MQTT broker stopped");
            }
        })
        .map_err(|e| BrokerError::Start(e.to_string()))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        // Listening once the port cannot be bound (a probe connection would be logged by
        // rumqttd as a broken client).
        if TcpListener::bind(addr).is_err() {
            tracing::info!(%addr, "embedded MQTT broker listening");
            return Ok(addr.port());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(BrokerError::Start(format!(
        "it did not accept connections on {addr} within 5 s"
    )))
}

/// rumqttd's settings: one MQTT 3.1.1 listener, payloads up to 16 MiB (a DBIRTH of a machine
/// with many signals is large), room for a shop's hosts and tools.
fn config(listen: SocketAddr) -> rumqttd::Config {
    let server = rumqttd::ServerSettings {
        name: "v4".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: rumqttd::ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: 16 << 20,
            max_inflight_count: 500,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: 1_000,
            max_outgoing_packet_count: 2_000,
            max_segment_size: 100 << 20,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("v4".to_string(), server)])),
        v5: None,
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    }
}
