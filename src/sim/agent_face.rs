//! The simulated shop's MTConnect agent: one HTTP listener serving every shop machine as an
//! MTConnect 2.0 device, the way a shop's cppagent would.
//!
//! # What it answers
//!
//! | request | answer |
//! |---|---|
//! | `/probe`, `/{device}/probe` | `MTConnectDevices`: each machine a `Device` (name = machine id), its items under components by type (`Controller` > `Path`, `Axes` > `Rotary`/`Linear`, others directly under the device) |
//! | `/current`, `/{device}/current` | `MTConnectStreams`: every item's latest observation |
//! | `/sample?from&count` | the buffered observations from `from` (default: the oldest), at most `count` (default 100) |
//! | `/sample?…&interval=ms[&heartbeat=ms]` | a `multipart/x-mixed-replace` stream: a part with what arrived, at most one per `interval`; an empty part after `heartbeat` (default 10 s) of quiet |
//! | a `from` outside the buffer | `OUT_OF_RANGE` error document (HTTP 404, as cppagent) |
//! | a malformed query | `INVALID_REQUEST` (HTTP 400); an unknown device `NO_DEVICE` (404); anything else `INVALID_URI` (400) |
//!
//! # The buffer
//!
//! Every observation gets the next sequence number and goes into a circular buffer of
//! [`AgentOptions::buffer_size`]; the oldest falls out when it is full (`firstSequence` moves
//! up). A stream that falls behind skips what fell out, and its next part's `firstSequence`
//! is above the `from` it was at: exactly what a client sees from a real agent after a buffer
//! overrun. The `instanceId` is the start time in seconds (always new after a restart).
//!
//! # Ids
//!
//! Item ids are the machine's own (`pexecution`, `Sspeed`), as the profiles expect, so two
//! machines of one family share ids: they are unique per device, not across the document as
//! a real agent would require. Clients that read per `DeviceStream` (ours does) do not mind.
//!
//! # Faults on demand
//!
//! [`AgentFace`] is also the control handle tests use: [`AgentFace::restart`] (new instance,
//! sequence numbers from 1, buffer cleared and refilled with the latest values as adapters
//! would resend them; open streams are closed, as a dying process closes them) and
//! [`AgentFace::stall`] (the agent stops answering: open streams get nothing, not even
//! heartbeats, and new requests hang, until unstalled).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::shop::{FaceEvent, FaceValue, SimShop};
use crate::drivers::{DataItemMeta, ItemCategory};
use crate::model::{ConditionLevel, Timestamp, Value};

/// How the agent is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentOptions {
    /// Observations the circular buffer holds (cppagent's default is 131072).
    pub buffer_size: usize,
}

impl Default for AgentOptions {
    fn default() -> Self {
        Self {
            buffer_size: 131_072,
        }
    }
}

/// A device the agent serves.
#[derive(Clone, Debug, PartialEq)]
pub struct FaceDevice {
    pub name: String,
    pub uuid: String,
    pub items: Vec<Arc<DataItemMeta>>,
}

/// The default heartbeat of a stream that did not ask for one.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
/// `count` when the request gives none.
const DEFAULT_COUNT: usize = 100;
const STREAM_BOUNDARY: &str = "shopbridge-sim-part";

/// The running agent's state and its control handle; cheap to clone.
#[derive(Clone)]
pub struct AgentFace {
    inner: Arc<Inner>,
}

struct Inner {
    devices: Vec<DeviceModel>,
    state: Mutex<AgentState>,
    /// Bumped at every append and restart: streams wait on it.
    changed: watch::Sender<u64>,
    /// True while stalled.
    stalled: watch::Sender<bool>,
}

/// A device with what rendering needs precomputed.
struct DeviceModel {
    dev: FaceDevice,
    /// `(component type, component id)`; index 0 is the device itself.
    components: Vec<(String, String)>,
    /// Per item: its component index, element name, section.
    items: Vec<ItemModel>,
}

struct ItemModel {
    component: usize,
    element: String,
    section: Section,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Section {
    Samples,
    Events,
    Condition,
}

impl Section {
    fn tag(self) -> &'static str {
        match self {
            Section::Samples => "Samples",
            Section::Events => "Events",
            Section::Condition => "Condition",
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    seq: u64,
    device: usize,
    item: usize,
    at: Timestamp,
    value: FaceValue,
}

struct AgentState {
    instance_id: u64,
    capacity: usize,
    buffer: VecDeque<Entry>,
    /// The sequence number the next observation gets.
    next_seq: u64,
    /// Latest observation per device per item, for `/current` (kept when the buffer drops it).
    latest: Vec<Vec<Option<Entry>>>,
}

impl AgentState {
    fn first_seq(&self) -> u64 {
        self.buffer.front().map_or(self.next_seq, |e| e.seq)
    }

    fn append(&mut self, device: usize, item: usize, at: Timestamp, value: FaceValue) {
        let e = Entry {
            seq: self.next_seq,
            device,
            item,
            at,
            value,
        };
        self.next_seq += 1;
        if let Some(slot) = self.latest.get_mut(device).and_then(|d| d.get_mut(item)) {
            *slot = Some(e.clone());
        }
        if self.buffer.len() >= self.capacity {
            self.buffer.pop_front();
        }
        self.buffer.push_back(e);
    }

    fn header(&self) -> Header {
        Header {
            instance_id: self.instance_id,
            buffer_size: self.capacity as u64,
            first: self.first_seq(),
            last: self.next_seq.saturating_sub(1),
            next: self.next_seq,
        }
    }

    /// Buffered entries from `from`, at most `count`, of `device` (all when None). Returns
    /// them and the sequence after the last one looked at.
    fn range(&self, from: u64, count: usize, device: Option<usize>) -> (Vec<Entry>, u64) {
        let first = self.first_seq();
        let start = from.max(first);
        let skip = usize::try_from(start - first).unwrap_or(usize::MAX);
        let mut out = Vec::new();
        let mut next = self.next_seq;
        for e in self.buffer.iter().skip(skip) {
            if out.len() >= count {
                next = e.seq;
                break;
            }
            if device.is_none_or(|d| d == e.device) {
                out.push(e.clone());
            }
        }
        (out, next)
    }
}

#[derive(Clone, Copy)]
struct Header {
    instance_id: u64,
    buffer_size: u64,
    first: u64,
    last: u64,
    next: u64,
}

fn new_instance_id(after: u64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    now.max(after + 1)
}

/// `PART_COUNT` → `PartCount`: MTConnect's element name for a data item type.
fn pascal(ty: &str) -> String {
    let mut out = String::with_capacity(ty.len());
    for word in ty.split('_') {
        let mut c = word.chars();
        if let Some(f) = c.next() {
            out.push(f.to_ascii_uppercase());
            out.extend(c.map(|c| c.to_ascii_lowercase()));
        }
    }
    out
}

/// Where a component type sits: `Path` in a `Controller`, axes in `Axes`.
fn parent_of(ty: &str) -> Option<&'static str> {
    match ty {
        "Path" => Some("Controller"),
        "Rotary" | "Linear" => Some("Axes"),
        _ => None,
    }
}

fn xml_id(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl DeviceModel {
    fn new(dev: FaceDevice) -> Self {
        let did = xml_id(&dev.name);
        let mut components = vec![("Device".to_string(), did.clone())];
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut items = Vec::with_capacity(dev.items.len());
        let mut add = |ty: &str, components: &mut Vec<(String, String)>| -> usize {
            if let Some(&i) = index.get(ty) {
                return i;
            }
            components.push((ty.to_string(), format!("{did}-{}", ty.to_ascii_lowercase())));
            index.insert(ty.to_string(), components.len() - 1);
            components.len() - 1
        };
        for m in &dev.items {
            let ty = m.component.as_deref().unwrap_or("Device");
            let component = if ty == "Device" {
                0
            } else {
                if let Some(p) = parent_of(ty) {
                    add(p, &mut components);
                }
                add(ty, &mut components)
            };
            let section = match m.category {
                Some(ItemCategory::Sample) => Section::Samples,
                Some(ItemCategory::Condition) => Section::Condition,
                Some(ItemCategory::Event) | None => Section::Events,
            };
            let mut element = pascal(&m.item_type);
            match m.representation.as_deref() {
                Some("TIME_SERIES") => element.push_str("TimeSeries"),
                Some("DATA_SET") => element.push_str("DataSet"),
                Some("TABLE") => element.push_str("Table"),
                _ => {}
            }
            items.push(ItemModel {
                component,
                element,
                section,
            });
        }
        Self {
            dev,
            components,
            items,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// XML writing
// ---------------------------------------------------------------------------------------------

fn esc(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

fn open_doc(out: &mut String, root: &str, kind: &str) {
    let _ = write!(
        out,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<{root} xmlns:m="urn:mtconnect.org:{kind}:2.0" xmlns="urn:mtconnect.org:{kind}:2.0" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="urn:mtconnect.org:{kind}:2.0 http://schemas.mtconnect.org/schemas/{kind}_2.0.xsd">"#
    );
}

fn write_header(out: &mut String, h: &Header, streams: bool) {
    let _ = write!(
        out,
        r#"<Header creationTime="{}" sender="shopbridge-sim" instanceId="{}" version="2.0.0" bufferSize="{}""#,
        now_text(),
        h.instance_id,
        h.buffer_size
    );
    if streams {
        let _ = write!(
            out,
            r#" nextSequence="{}" firstSequence="{}" lastSequence="{}""#,
            h.next, h.first, h.last
        );
    } else {
        out.push_str(r#" assetBufferSize="1024" assetCount="0""#);
    }
    out.push_str("/>");
}

fn now_text() -> String {
    let us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(0))
        .unwrap_or(0);
    Timestamp::from_micros(us).to_rfc3339()
}

/// An `MTConnectError` document.
fn error_doc(code: &str, message: &str) -> String {
    let mut out = String::new();
    open_doc(&mut out, "MTConnectError", "MTConnectError");
    let _ = write!(
        out,
        r#"<Header creationTime="{}" sender="shopbridge-sim" instanceId="0" version="2.0.0" bufferSize="0"/><Errors><Error errorCode="{code}">"#,
        now_text()
    );
    esc(&mut out, message);
    out.push_str("</Error></Errors></MTConnectError>");
    out
}

fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    xml_response(status, error_doc(code, message))
}

fn xml_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, AgentState> {
        // A panic elsewhere while holding the lock leaves plain data; keep serving it.
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn devices_doc(&self, only: Option<usize>) -> String {
        let h = self.lock().header();
        let mut out = String::with_capacity(4096);
        open_doc(&mut out, "MTConnectDevices", "MTConnectDevices");
        write_header(&mut out, &h, false);
        out.push_str("<Devices>");
        for (di, d) in self.devices.iter().enumerate() {
            if only.is_some_and(|o| o != di) {
                continue;
            }
            let did = &d.components[0].1;
            out.push_str(r#"<Device id=""#);
            esc(&mut out, did);
            out.push_str(r#"" name=""#);
            esc(&mut out, &d.dev.name);
            out.push_str(r#"" uuid=""#);
            esc(&mut out, &d.dev.uuid);
            out.push_str(
                r#""><Description manufacturer="shopbridge">simulated machine</Description>"#,
            );
            self.write_items(&mut out, d, 0);
            self.write_children(&mut out, d, None);
            out.push_str("</Device>");
        }
        out.push_str("</Devices></MTConnectDevices>");
        out
    }

    /// The components whose parent is `parent` (None: the device), recursively.
    fn write_children(&self, out: &mut String, d: &DeviceModel, parent: Option<&str>) {
        let kids: Vec<usize> = (1..d.components.len())
            .filter(|&c| parent_of(&d.components[c].0) == parent)
            .collect();
        if kids.is_empty() {
            return;
        }
        out.push_str("<Components>");
        for c in kids {
            let (ty, id) = &d.components[c];
            let _ = write!(out, r#"<{ty} id="{}" name="{}">"#, xml_id(id), xml_id(ty));
            self.write_items(out, d, c);
            self.write_children(out, d, Some(ty));
            let _ = write!(out, "</{ty}>");
        }
        out.push_str("</Components>");
    }

    fn write_items(&self, out: &mut String, d: &DeviceModel, component: usize) {
        let mine: Vec<usize> = (0..d.items.len())
            .filter(|&i| d.items[i].component == component)
            .collect();
        if mine.is_empty() {
            return;
        }
        out.push_str("<DataItems>");
        for i in mine {
            let m = &d.dev.items[i];
            let cat = match d.items[i].section {
                Section::Samples => "SAMPLE",
                Section::Events => "EVENT",
                Section::Condition => "CONDITION",
            };
            out.push_str(r#"<DataItem category=""#);
            out.push_str(cat);
            out.push_str(r#"" id=""#);
            esc(out, &m.id);
            out.push_str(r#"" type=""#);
            esc(out, &m.item_type);
            out.push('"');
            for (k, v) in [
                ("name", &m.name),
                ("subType", &m.sub_type),
                ("units", &m.units),
                ("representation", &m.representation),
            ] {
                if let Some(v) = v {
                    let _ = write!(out, r#" {k}=""#);
                    esc(out, v);
                    out.push('"');
                }
            }
            out.push_str("/>");
        }
        out.push_str("</DataItems>");
    }

    /// A Streams document of `entries` (any order), grouped as MTConnect wants it.
    fn streams_doc(&self, h: &Header, entries: &[Entry], only: Option<usize>) -> String {
        let mut out = String::with_capacity(512 + entries.len() * 160);
        open_doc(&mut out, "MTConnectStreams", "MTConnectStreams");
        write_header(&mut out, h, true);
        out.push_str("<Streams>");
        // (device, component, section) → entries in sequence order.
        let mut groups: BTreeMap<(usize, usize, Section), Vec<&Entry>> = BTreeMap::new();
        for e in entries {
            let Some(im) = self.devices.get(e.device).and_then(|d| d.items.get(e.item)) else {
                continue;
            };
            groups
                .entry((e.device, im.component, im.section))
                .or_default()
                .push(e);
        }
        for (di, d) in self.devices.iter().enumerate() {
            if only.is_some_and(|o| o != di) {
                continue;
            }
            out.push_str(r#"<DeviceStream name=""#);
            esc(&mut out, &d.dev.name);
            out.push_str(r#"" uuid=""#);
            esc(&mut out, &d.dev.uuid);
            out.push_str(r#"">"#);
            let mut open_comp: Option<usize> = None;
            for ((_, ci, sec), list) in
                groups.range((di, 0, Section::Samples)..=(di, usize::MAX, Section::Condition))
            {
                if open_comp != Some(*ci) {
                    if open_comp.is_some() {
                        out.push_str("</ComponentStream>");
                    }
                    let (ty, id) = &d.components[*ci];
                    let _ = write!(
                        out,
                        r#"<ComponentStream component="{ty}" name="{}" componentId="{}">"#,
                        xml_id(ty),
                        xml_id(id)
                    );
                    open_comp = Some(*ci);
                }
                let _ = write!(out, "<{}>", sec.tag());
                let mut sorted = list.clone();
                sorted.sort_by_key(|e| e.seq);
                for e in sorted {
                    write_obs(&mut out, d, e);
                }
                let _ = write!(out, "</{}>", sec.tag());
            }
            if open_comp.is_some() {
                out.push_str("</ComponentStream>");
            }
            out.push_str("</DeviceStream>");
        }
        out.push_str("</Streams></MTConnectStreams>");
        out
    }
}

fn write_obs(out: &mut String, d: &DeviceModel, e: &Entry) {
    let (Some(m), Some(im)) = (d.dev.items.get(e.item), d.items.get(e.item)) else {
        return;
    };
    let (element, text, cond) = match &e.value {
        FaceValue::Value(v) => {
            let text = match v {
                Value::Unavailable => "UNAVAILABLE".to_string(),
                other => other.to_string(),
            };
            (im.element.as_str(), text, None)
        }
        FaceValue::Condition {
            level,
            native_code,
            message,
        } => {
            let el = match level {
                ConditionLevel::Normal => "Normal",
                ConditionLevel::Warning => "Warning",
                ConditionLevel::Fault => "Fault",
                ConditionLevel::Unavailable => "Unavailable",
            };
            (
                el,
                message.clone().unwrap_or_default(),
                Some(native_code.as_deref()),
            )
        }
    };
    let _ = write!(out, r#"<{element} dataItemId=""#);
    esc(out, &m.id);
    let _ = write!(
        out,
        r#"" timestamp="{}" sequence="{}""#,
        e.at.to_rfc3339(),
        e.seq
    );
    if let Some(n) = &m.name {
        out.push_str(r#" name=""#);
        esc(out, n);
        out.push('"');
    }
    if let Some(s) = &m.sub_type {
        out.push_str(r#" subType=""#);
        esc(out, s);
        out.push('"');
    }
    if let Some(code) = cond {
        out.push_str(r#" type=""#);
        esc(out, &m.item_type);
        out.push('"');
        if let Some(c) = code {
            out.push_str(r#" nativeCode=""#);
            esc(out, c);
            out.push('"');
        }
    }
    if text.is_empty() {
        out.push_str("/>");
    } else {
        out.push('>');
        esc(out, &text);
        let _ = write!(out, "</{element}>");
    }
}

// ---------------------------------------------------------------------------------------------
// The handle
// ---------------------------------------------------------------------------------------------

impl AgentFace {
    /// An agent for `devices`, with an empty buffer.
    pub fn new(devices: Vec<FaceDevice>, options: AgentOptions) -> Self {
        let latest = devices.iter().map(|d| vec![None; d.items.len()]).collect();
        let devices = devices.into_iter().map(DeviceModel::new).collect();
        let state = AgentState {
            instance_id: new_instance_id(0),
            capacity: options.buffer_size.max(1),
            buffer: VecDeque::new(),
            next_seq: 1,
            latest,
        };
        Self {
            inner: Arc::new(Inner {
                devices,
                state: Mutex::new(state),
                changed: watch::Sender::new(0),
                stalled: watch::Sender::new(false),
            }),
        }
    }

    /// An agent describing every machine of `shop` (not yet fed: see [`Self::feed`]).
    pub fn for_shop(shop: &SimShop, options: AgentOptions) -> Self {
        let devices = shop
            .machines()
            .iter()
            .map(|m| FaceDevice {
                name: m.device.clone(),
                uuid: m.uuid.clone(),
                items: m.items.clone(),
            })
            .collect();
        Self::new(devices, options)
    }

    /// Appends observations of device `device` (an index into the devices given) to the
    /// buffer and wakes the streams.
    pub fn push(&self, device: usize, events: &[FaceEvent]) {
        if events.is_empty() {
            return;
        }
        {
            let mut st = self.inner.lock();
            for e in events {
                st.append(device, e.item, e.at, e.value.clone());
            }
        }
        self.inner.changed.send_modify(|n| *n += 1);
    }

    /// Feeds the agent from the shop until `shutdown`: each machine's snapshot, then its
    /// changes. A machine whose feed lagged is resnapshotted (what an adapter does).
    pub fn feed(&self, shop: SimShop, shutdown: CancellationToken) {
        for i in 0..shop.machines().len() {
            let face = self.clone();
            let shop = shop.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    let (snapshot, mut rx) = shop.subscribe(i);
                    face.push(i, &snapshot);
                    loop {
                        let r = tokio::select! {
                            _ = shutdown.cancelled() => return,
                            r = rx.recv() => r,
                        };
                        match r {
                            Ok(batch) => face.push(i, &batch),
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                        }
                    }
                }
            });
        }
    }

    /// The agent restarts: a new `instanceId`, sequence numbers from 1, the buffer cleared and
    /// refilled with every item's latest value (as its adapters would resend them). Open
    /// streams end.
    pub fn restart(&self) {
        {
            let mut st = self.inner.lock();
            st.instance_id = new_instance_id(st.instance_id);
            st.buffer.clear();
            st.next_seq = 1;
            let mut latest: Vec<Entry> = st.latest.iter().flatten().flatten().cloned().collect();
            latest.sort_by_key(|e| e.seq);
            for e in latest {
                st.append(e.device, e.item, e.at, e.value);
            }
        }
        self.inner.changed.send_modify(|n| *n += 1);
    }

    /// Stalls (`true`) or resumes the agent. Stalled, it accepts connections but answers
    /// nothing, and open streams get no parts and no heartbeats; nothing is closed.
    pub fn stall(&self, on: bool) {
        self.inner.stalled.send_replace(on);
    }

    pub fn instance_id(&self) -> u64 {
        self.inner.lock().instance_id
    }

    /// `(firstSequence, nextSequence)` now.
    pub fn sequence(&self) -> (u64, u64) {
        let st = self.inner.lock();
        (st.first_seq(), st.next_seq)
    }

    /// Serves HTTP on `listener` until `shutdown`.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        let app = Router::new()
            .route("/probe", get(probe))
            .route("/current", get(current))
            .route("/sample", get(sample))
            .route("/{device}/probe", get(probe_device))
            .route("/{device}/current", get(current_device))
            .route("/{device}/sample", get(sample_device))
            .fallback(fallback)
            .with_state(Ctx {
                face: self.clone(),
                shutdown: shutdown.clone(),
            });
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    }

    fn device_index(&self, name: &str) -> Option<usize> {
        self.inner
            .devices
            .iter()
            .position(|d| d.dev.name == name || d.dev.uuid == name)
    }

    /// Waits while stalled.
    async fn unstalled(&self) {
        let mut rx = self.inner.stalled.subscribe();
        // The sender lives in `inner`, which outlives this wait.
        let _ = rx.wait_for(|s| !*s).await;
    }
}

/// Serves the shop's machines as one MTConnect agent on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    shop: SimShop,
    options: AgentOptions,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let face = AgentFace::for_shop(&shop, options);
    face.feed(shop, shutdown.clone());
    face.serve(listener, shutdown).await
}

// ---------------------------------------------------------------------------------------------
// HTTP handlers
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
struct Ctx {
    face: AgentFace,
    shutdown: CancellationToken,
}

type Params = Query<HashMap<String, String>>;

async fn probe(State(c): State<Ctx>) -> Response {
    c.face.unstalled().await;
    xml_response(StatusCode::OK, c.face.inner.devices_doc(None))
}

async fn probe_device(State(c): State<Ctx>, Path(device): Path<String>) -> Response {
    c.face.unstalled().await;
    match c.face.device_index(&device) {
        Some(d) => xml_response(StatusCode::OK, c.face.inner.devices_doc(Some(d))),
        None => no_device(&device),
    }
}

async fn current(State(c): State<Ctx>) -> Response {
    c.face.unstalled().await;
    current_doc(&c.face, None)
}

async fn current_device(State(c): State<Ctx>, Path(device): Path<String>) -> Response {
    c.face.unstalled().await;
    match c.face.device_index(&device) {
        Some(d) => current_doc(&c.face, Some(d)),
        None => no_device(&device),
    }
}

async fn sample(State(c): State<Ctx>, q: Params) -> Response {
    c.face.unstalled().await;
    sample_for(c, &q, None)
}

async fn sample_device(State(c): State<Ctx>, Path(device): Path<String>, q: Params) -> Response {
    c.face.unstalled().await;
    match c.face.device_index(&device) {
        Some(d) => sample_for(c, &q, Some(d)),
        None => no_device(&device),
    }
}

async fn fallback(State(c): State<Ctx>, uri: axum::http::Uri) -> Response {
    c.face.unstalled().await;
    error_response(
        StatusCode::BAD_REQUEST,
        "INVALID_URI",
        &format!("{} is not a request this agent serves", uri.path()),
    )
}

fn no_device(name: &str) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "NO_DEVICE",
        &format!("Could not find the device '{name}'"),
    )
}

fn current_doc(face: &AgentFace, only: Option<usize>) -> Response {
    let (h, entries) = {
        let st = face.inner.lock();
        let entries: Vec<Entry> = st.latest.iter().flatten().flatten().cloned().collect();
        (st.header(), entries)
    };
    xml_response(StatusCode::OK, face.inner.streams_doc(&h, &entries, only))
}

/// A query parameter that must be a whole number; `Err` holds the agent's message.
fn number(q: &HashMap<String, String>, key: &str) -> Result<Option<u64>, String> {
    match q.get(key) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("'{key}' must be a positive integer, found '{v}'")),
    }
}

fn sample_for(c: Ctx, q: &HashMap<String, String>, only: Option<usize>) -> Response {
    let parsed = (|| {
        Ok::<_, String>((
            number(q, "from")?,
            number(q, "count")?,
            number(q, "interval")?,
            number(q, "heartbeat")?,
        ))
    })();
    let (from, count, interval, heartbeat) = match parsed {
        Ok(p) => p,
        Err(message) => {
            return error_response(StatusCode::BAD_REQUEST, "INVALID_REQUEST", &message);
        }
    };
    let count = count.map_or(DEFAULT_COUNT, |n| usize::try_from(n).unwrap_or(usize::MAX));
    if count == 0 {
        return error_response(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            "'count' must be greater than 0",
        );
    }
    let (h, from) = {
        let st = c.face.inner.lock();
        (st.header(), from.unwrap_or_else(|| st.first_seq()))
    };
    if from < h.first || from > h.next {
        return error_response(
            StatusCode::NOT_FOUND,
            "OUT_OF_RANGE",
            &format!(
                "'from' must be between firstSequence {} and nextSequence {}, found {from}",
                h.first, h.next
            ),
        );
    }
    let Some(interval) = interval else {
        let (entries, next, h) = {
            let st = c.face.inner.lock();
            let (entries, next) = st.range(from, count, only);
            (entries, next, st.header())
        };
        let h = Header { next, ..h };
        return xml_response(StatusCode::OK, c.face.inner.streams_doc(&h, &entries, only));
    };
    let heartbeat = heartbeat.map_or(DEFAULT_HEARTBEAT, Duration::from_millis);
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    tokio::spawn(stream_writer(
        c,
        only,
        from,
        count,
        Duration::from_millis(interval),
        heartbeat,
        tx,
    ));
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(
            header::CONTENT_TYPE,
            format!("multipart/x-mixed-replace;boundary={STREAM_BOUNDARY}"),
        )
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn part(doc: &str) -> Bytes {
    Bytes::from(format!(
        "--{STREAM_BOUNDARY}\r\nContent-type: text/xml\r\nContent-length: {}\r\n\r\n{doc}\r\n",
        doc.len()
    ))
}

/// Writes one stream's parts until the client goes, the agent restarts or shuts down.
async fn stream_writer(
    c: Ctx,
    only: Option<usize>,
    mut pos: u64,
    count: usize,
    interval: Duration,
    heartbeat: Duration,
    tx: mpsc::Sender<Bytes>,
) {
    let face = &c.face;
    let mut changed = face.inner.changed.subscribe();
    let instance = face.instance_id();
    let mut last_sent = tokio::time::Instant::now();
    loop {
        // Stalled: write nothing, close nothing.
        tokio::select! {
            _ = c.shutdown.cancelled() => return,
            _ = face.unstalled() => {}
        }
        let (entries, next, h) = {
            let st = face.inner.lock();
            if st.instance_id != instance {
                return; // restarted: a dying agent closes its streams
            }
            let (entries, next) = st.range(pos, count, only);
            (entries, next, st.header())
        };
        let quiet = last_sent.elapsed() >= heartbeat;
        if !entries.is_empty() || quiet || next != pos {
            if !entries.is_empty() || quiet {
                let doc = face
                    .inner
                    .streams_doc(&Header { next, ..h }, &entries, only);
                if tx.send(part(&doc)).await.is_err() {
                    return; // the client went away
                }
                last_sent = tokio::time::Instant::now();
            }
            pos = next;
        }
        let more = {
            let st = face.inner.lock();
            st.next_seq > pos
        };
        if more {
            // More is waiting (a count-limited part): pace by the interval only.
            tokio::select! {
                _ = c.shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            continue;
        }
        let wait = heartbeat.saturating_sub(last_sent.elapsed());
        tokio::select! {
            _ = c.shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            r = changed.changed() => {
                if r.is_err() {
                    return;
                }
                // Let changes gather for one interval, as an agent does.
                tokio::select! {
                    _ = c.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(interval) => {}
                }
            }
        }
    }
}
