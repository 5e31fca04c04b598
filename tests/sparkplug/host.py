"""An independent Sparkplug B 3.0 host application (Python pysparkplug) that watches shopbridge's
edge node as an ERP integrator's host would. Run by the Sparkplug tests as a subprocess:

    python3 tests/sparkplug/host.py --broker 127.0.0.1:PORT --group G [--seconds N]
        [--rebirth-after-dbirths K] [--host-id ID] [--cmd-datatypes] [--no-stdin]

stdout, one line each: `ready` once it is subscribed (and its STATE is on the broker), then one
JSON object per Sparkplug message received on spBv1.0/G/#, per command sent and per event.
stdin, one JSON object a line: commands to send (dcmd, ncmd, rebirth, state, exit).
tests/sparkplug/README.md describes the protocol; it exits 0 after --seconds or on stdin's end.
"""

import argparse
import datetime
import itertools
import json
import math
import os
import queue
import signal
import sys
import threading
import time

import pysparkplug as spb
from pysparkplug._protobuf import Payload as PbPayload  # the Sparkplug B message classes

# Sparkplug's names of its datatypes, by enum value (pysparkplug's DataType names are upper-case).
DATATYPE_NAMES = [
    "Unknown", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64",
    "Float", "Double", "Boolean", "String", "DateTime", "Text", "UUID", "DataSet", "Bytes",
    "File", "Template", "PropertySet", "PropertySetList", "Int8Array", "Int16Array",
    "Int32Array", "Int64Array", "UInt8Array", "UInt16Array", "UInt32Array", "UInt64Array",
    "FloatArray", "DoubleArray", "BooleanArray", "StringArray", "DateTimeArray",
]
BY_NAME = {n.lower(): i for i, n in enumerate(DATATYPE_NAMES)}
SIGNED_BITS = {1: 8, 2: 16, 3: 32, 4: 64}
UNSIGNED_BITS = {5: 8, 6: 16, 7: 32, 8: 64}
FIELD_BITS = {"int_value": 32, "long_value": 64}
ARRAY_TYPES = set(range(22, 35))
REBIRTH = "Node Control/Rebirth"

_out_lock = threading.Lock()
_held = []  # lines received before `ready`, printed right after it
_out = {"ready": False, "gone": threading.Event()}


def emit(obj, hold=True):
    """One line on stdout, flushed at once (the test reads it while the host runs). `ready` is
    the first line, unless a fatal error comes first (hold=False). Never raises: when the reader
    has gone, `_out["gone"]` is set."""
    line = obj if isinstance(obj, str) else json.dumps(_jsonable(obj), separators=(",", ":"))
    with _out_lock:
        if line == "ready":
            _out["ready"] = True
            lines = [line] + _held
            _held.clear()
        elif not hold:
            lines = _held + [line]
            _held.clear()
        elif not _out["ready"]:
            _held.append(line)
            return
        else:
            lines = [line]
        if _out["gone"].is_set():
            return
        try:
            sys.stdout.write("".join(x + "\n" for x in lines))
            sys.stdout.flush()
        except (OSError, ValueError):
            _out["gone"].set()


def _jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    if isinstance(v, datetime.datetime):
        return round(v.timestamp() * 1000)
    return v


def now_ms():
    return int(time.time() * 1000)


# ---------------------------------------------------------------------------------------------
# Decoding. pysparkplug parses the protobuf; values are interpreted here, because pysparkplug 0.6.1
# raises on Int8/Int16 sign-extended to 32 bits (the reference implementation's form), needs the
# datatype on every metric of a DATA message it has no birth for, and raises on an unknown alias.


def scalar(dtype, field, raw):
    """(value, wire, error) of one scalar value carried in `field` for Sparkplug datatype `dtype`."""
    if dtype in SIGNED_BITS and field in FIELD_BITS:
        bits, width = SIGNED_BITS[dtype], FIELD_BITS[field]
        if raw >= 1 << (width - 1):  # negative, sign-extended to the field's width
            value = raw - (1 << width)
        elif bits < width and raw >= 1 << (bits - 1):  # negative, two's complement in its own width
            value = raw - (1 << bits)
        else:
            value = raw
        err = None
        if not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
            err = f"{raw} in {field} is out of range for {DATATYPE_NAMES[dtype]}"
        return value, raw, err
    if dtype in UNSIGNED_BITS and field in FIELD_BITS:
        bits = UNSIGNED_BITS[dtype]
        err = None if raw < 1 << bits else f"{raw} is out of range for {DATATYPE_NAMES[dtype]}"
        return raw, None, err
    if dtype in ARRAY_TYPES and field == "bytes_value":
        try:
            return list(spb.DataType(dtype).decode(raw)), None, None
        except Exception as e:  # noqa: BLE001 - reported, not fatal
            return raw, None, f"{DATATYPE_NAMES[dtype]}: {e}"
    return raw, None, None  # DateTime stays epoch milliseconds; bytes print as hex


def expected_field(dtype):
    try:
        return spb.DataType(dtype).field
    except (ValueError, NotImplementedError):
        return {16: "dataset_value", 19: "template_value"}.get(dtype)


def property_set(ps):
    out = {}
    for key, pv in zip(ps.keys, ps.values):
        field = pv.WhichOneof("value")
        if pv.is_null or field is None:
            out[key] = None
        elif field == "propertyset_value":
            out[key] = property_set(pv.propertyset_value)
        elif field == "propertysets_value":
            out[key] = [property_set(p) for p in pv.propertysets_value.propertyset]
        else:
            out[key] = scalar(pv.type, field, getattr(pv, field))[0]
    return out


def dataset(ds):
    rows = []
    for row in ds.rows:
        cells = []
        for i, el in enumerate(row.elements):
            field = el.WhichOneof("value")
            t = ds.types[i] if i < len(ds.types) else 0
            cells.append(None if field is None else scalar(t, field, getattr(el, field))[0])
        rows.append(cells)
    return {
        "columns": list(ds.columns),
        "types": [DATATYPE_NAMES[t] if t < len(DATATYPE_NAMES) else t for t in ds.types],
        "rows": rows,
    }


def template(t):
    params = []
    for p in t.parameters:
        field = p.WhichOneof("value")
        params.append({
            "name": p.name,
            "type": DATATYPE_NAMES[p.type] if p.type < len(DATATYPE_NAMES) else p.type,
            "value": None if field is None else scalar(p.type, field, getattr(p, field))[0],
        })
    return {
        "template_ref": t.template_ref if t.HasField("template_ref") else None,
        "is_definition": t.is_definition,
        "version": t.version if t.HasField("version") else None,
        "parameters": params,
        "metrics": [metric(m, None) for m in t.metrics],
    }


def metric(m, table):
    """One metric as a dict; `table` is the birth the aliases and datatypes come from, or None."""
    name = m.name if m.HasField("name") else None
    alias = m.alias if m.HasField("alias") else None
    dtype = m.datatype if m.HasField("datatype") else 0
    name_from_alias = unresolved = dtype_from_birth = False
    if name is None and alias is not None:
        entry = table["by_alias"].get(alias) if table else None
        if entry is None:
            unresolved = True
        else:
            name, name_from_alias = entry, True
    if dtype == 0 and name is not None and table and name in table["by_name"]:
        dtype, dtype_from_birth = table["by_name"][name], True
    out = {
        "name": name,
        "alias": alias,
        "datatype": DATATYPE_NAMES[dtype] if dtype < len(DATATYPE_NAMES) else dtype,
        "value": None,
        "timestamp": m.timestamp if m.HasField("timestamp") else None,
        "is_historical": m.is_historical,
        "is_transient": m.is_transient,
        "is_null": m.is_null,
        "name_from_alias": name_from_alias,
        "unresolved_alias": unresolved,
    }
    if dtype_from_birth:
        out["datatype_from_birth"] = True
    field = m.WhichOneof("value")
    if field is not None and not m.is_null:
        raw = getattr(m, field)
        want = expected_field(dtype)
        if dtype and want and field != want:
            out["field_mismatch"] = field
        if field == "template_value":
            out["value"] = template(raw)
        elif field == "dataset_value":
            out["value"] = dataset(raw)
        elif field == "extension_value":
            out["value_error"] = "extension values are not decoded"
        else:
            value, wire, err = scalar(dtype, field, raw)
            out["value"] = value
            if wire is not None:
                out["wire"] = wire
            if err:
                out["value_error"] = err
    if m.HasField("properties"):
        out["properties"] = property_set(m.properties)
    return out


class Host:
    """What the host has learnt: births (aliases, datatypes, bdSeq) and each node's last seq."""

    def __init__(self):
        self.births = {}  # (group, edge, device or None) -> {"by_alias", "by_name"}
        self.bdseq = {}  # (group, edge) -> bdSeq of the last NBIRTH
        self.seq = {}  # (group, edge) -> last seq seen

    def _drop_node(self, node):
        for key in [k for k in self.births if k[:2] == node]:
            del self.births[key]
        self.seq.pop(node, None)

    def decode(self, topic_str, raw):
        topic = spb.Topic.from_str(topic_str)
        mtype = topic.message_type
        if mtype == spb.MessageType.STATE:
            state = spb.State.decode(raw)
            return {"type": "STATE", "host_id": topic.sparkplug_host_id,
                    "online": state.online, "timestamp": state.timestamp}
        if mtype is None or topic.edge_node_id is None:
            raise ValueError("not a Sparkplug message topic")
        pb = PbPayload.FromString(raw)
        group, edge, device = topic.group_id, topic.edge_node_id, topic.device_id
        node = (group, edge)
        out = {
            "type": str(mtype),
            "group": group,
            "edge_node": edge,
            "device": device,
            "seq": pb.seq if pb.HasField("seq") else None,
            "timestamp": pb.timestamp if pb.HasField("timestamp") else None,
        }
        is_birth = mtype in (spb.MessageType.NBIRTH, spb.MessageType.DBIRTH)
        if mtype == spb.MessageType.NBIRTH:
            self._drop_node(node)
        if is_birth:
            table = {"by_alias": {}, "by_name": {}}
            dups = []
            others = [t for k, t in self.births.items() if k[:2] == node and k[2] != device]
            for m in pb.metrics:
                if not m.HasField("name"):
                    continue
                if m.HasField("alias"):
                    if m.alias in table["by_alias"] or any(m.alias in t["by_alias"] for t in others):
                        dups.append(m.alias)
                    table["by_alias"][m.alias] = m.name
                table["by_name"][m.name] = m.datatype
            self.births[(group, edge, device)] = table
            out["duplicate_aliases"] = dups
        else:
            table = self.births.get((group, edge, device))
            if mtype != spb.MessageType.NDEATH:
                out["birth_seen"] = table is not None
        out["metrics"] = [metric(m, table) for m in pb.metrics]

        # Sequence numbers: one counter per edge node, NBIRTH at 0, then +1 mod 256 per message.
        if out["seq"] is not None and mtype not in (spb.MessageType.NCMD, spb.MessageType.DCMD):
            if mtype == spb.MessageType.NBIRTH:
                out["seq_ok"] = out["seq"] == 0
            elif node in self.seq:
                out["seq_ok"] = out["seq"] == (self.seq[node] + 1) % 256
            else:
                out["seq_ok"] = None
            self.seq[node] = out["seq"]

        bd = next((m["value"] for m in out["metrics"] if m["name"] == "bdSeq"), None)
        if mtype == spb.MessageType.NBIRTH:
            self.bdseq[node] = bd
        elif mtype == spb.MessageType.NDEATH:
            known = self.bdseq.get(node)
            out["bdseq_matches_birth"] = None if known is None else bd == known
            if known is not None and bd == known:  # a stale NDEATH must not kill a newer session
                self._drop_node(node)
        elif mtype == spb.MessageType.DDEATH:
            self.births.pop((group, edge, device), None)
        return out


# ---------------------------------------------------------------------------------------------
# The MQTT side: pysparkplug's Client, handing the callback the raw MQTT message.


class RawClient(spb.Client):
    """pysparkplug's Client decodes a message before the subscription's callback runs, and an
    exception there (unknown alias, sign-extended Int16, …) is raised again inside paho's network
    thread, which ends the thread: the host would go deaf. This one passes the paho message on
    and the host decodes it itself, reporting errors and carrying on."""

    def _handle_message(self, mqtt_message):
        return mqtt_message


class _Raw:
    """A payload Client.publish sends as it is (the probe's token)."""

    def __init__(self, data):
        self.data = data

    def encode(self, include_dtypes=False):
        return self.data


class _EpochMs:
    """A DateTime value for pysparkplug's encoder, which takes `int(value.timestamp() * 1000)`:
    the half millisecond keeps float rounding from landing one millisecond early."""

    def __init__(self, ms):
        self.ms = ms

    def timestamp(self):
        return (self.ms + 0.5) / 1000


def command_metric(spec):
    if not isinstance(spec, dict):
        raise ValueError(f"a metric must be a JSON object: {spec!r}")
    dname = str(spec.get("datatype", ""))
    if dname.lower() not in BY_NAME or BY_NAME[dname.lower()] == 0:
        raise ValueError(f"unknown datatype {dname!r}")
    dtype = spb.DataType(BY_NAME[dname.lower()])
    if spec.get("name") is None and spec.get("alias") is None:
        raise ValueError("a metric needs a name or an alias")
    value = spec.get("value")
    if value is not None:
        if dtype == spb.DataType.DATETIME:
            value = _EpochMs(int(value))
        elif dtype == spb.DataType.DATETIME_ARRAY:
            value = [_EpochMs(int(v)) for v in value]
        elif dtype in (spb.DataType.BYTES, spb.DataType.FILE):
            value = bytes.fromhex(value)
    return spb.Metric(
        timestamp=int(spec.get("timestamp", now_ms())),
        name=spec.get("name"),
        alias=spec.get("alias"),
        datatype=dtype,
        value=value,
        is_null=bool(spec.get("is_null", False)) or value is None,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--broker", required=True, help="HOST:PORT (or mqtt://HOST:PORT)")
    ap.add_argument("--group", required=True, help="Sparkplug group id to watch")
    ap.add_argument("--seconds", type=float, default=60.0, help="run this long (default 60)")
    ap.add_argument("--rebirth-after-dbirths", type=int, metavar="K",
                    help="after the K-th DBIRTH, send that edge node an NCMD rebirth (once)")
    ap.add_argument("--host-id", help="publish the 3.0 STATE birth/death as this host id")
    ap.add_argument("--cmd-datatypes", action="store_true",
                    help="put the datatype in NCMD/DCMD metrics (the spec says it SHOULD NOT be)")
    ap.add_argument("--no-stdin", action="store_true", help="read no commands; stdin's end is ignored")
    ap.add_argument("--client-id", default=f"shopbridge-test-host-{os.getpid()}")
    ap.add_argument("--username")
    ap.add_argument("--password")
    args = ap.parse_args()

    hostport = args.broker.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        ap.error("--broker must be HOST:PORT")
    port = int(port)

    deadline = time.monotonic() + args.seconds
    actions = queue.Queue()
    ready = threading.Event()
    probes = {}  # token -> Event, set when the probe comes back from the broker
    probe_topic = f"shopbridge-test/host/{args.client_id}/probe"
    probe_counter = itertools.count()
    connects = itertools.count()
    state = Host()
    dbirths = [0]
    state_ts = now_ms()
    state_topic = spb.Topic(message_type=spb.MessageType.STATE, sparkplug_host_id=args.host_id) \
        if args.host_id else None

    client = RawClient(
        client_id=args.client_id,
        username=args.username,
        password=args.password,
        # Reconnect within a second when the broker comes back (the default backs off to 120 s).
        client_options=spb.ClientOptions(reconnection_delay_min=1, reconnection_delay_max=1),
    )

    def state_message(online, ts):
        return spb.Message(topic=state_topic, payload=spb.State(timestamp=ts, online=online),
                           qos=spb.QoS.AT_LEAST_ONCE, retain=True)

    if state_topic is not None:
        # [tck-id-host-topic-phid-death-*]: Will is STATE online:false, QoS 1, retained, with the
        # same timestamp as the online:true published once connected.
        client.set_will(state_message(False, state_ts))

    def publish_probe(token):
        client.publish(spb.Message(topic=probe_topic, payload=_Raw(token.encode()),
                                   qos=spb.QoS.AT_LEAST_ONCE, retain=False))

    def on_message(_client, msg):
        try:
            if msg.topic == probe_topic:
                token = msg.payload.decode()
                if token.startswith("connect-"):
                    if not ready.is_set():
                        emit("ready")
                        ready.set()
                    else:
                        emit({"event": "resubscribed"})
                ev = probes.get(token)
                if ev is not None:
                    ev.set()
                return
            rx = round(time.time() * 1000, 3)
            try:
                out = state.decode(msg.topic, msg.payload)
            except Exception as e:  # noqa: BLE001 - a bad payload is reported, not fatal
                emit({"decode_error": f"{type(e).__name__}: {e}", "topic": msg.topic,
                      "payload_hex": bytes(msg.payload[:256]).hex()})
                return
            out["qos"] = msg.qos
            out["retain"] = bool(msg.retain)
            out["rx_ms"] = rx
            emit(out)
            if out["type"] == "DBIRTH" and args.rebirth_after_dbirths is not None:
                dbirths[0] += 1
                if dbirths[0] == args.rebirth_after_dbirths:
                    actions.put(("rebirth", out["edge_node"]))
        except Exception as e:  # noqa: BLE001 - never let paho's network thread die
            emit({"error": f"host: {type(e).__name__}: {e}"})

    def on_connect(_client):
        # pysparkplug has re-sent the SUBSCRIBEs already; the broker handles a connection's
        # packets in order, so when the probe published after them comes back, they are active.
        n = next(connects)
        if state_topic is not None:
            client.publish(state_message(True, state_ts))
        publish_probe(f"connect-{n}")

    client.subscribe(spb.Topic(group_id=args.group, message_type=spb.MULTI_LEVEL_WILDCARD),
                     spb.QoS.AT_LEAST_ONCE, on_message)
    if state_topic is not None:
        client.subscribe(state_topic, spb.QoS.AT_LEAST_ONCE, on_message)
    client.subscribe(probe_topic, spb.QoS.AT_LEAST_ONCE, on_message)  # a str works as a Topic here

    try:
        client.connect(host, port=port, keepalive=10, callback=on_connect)
    except Exception as e:  # noqa: BLE001
        emit({"error": f"cannot connect to {host}:{port}: {e}"}, hold=False)
        return 2
    if not ready.wait(timeout=max(1.0, min(15.0, deadline - time.monotonic()))):
        emit({"error": f"not subscribed at {host}:{port} in time"}, hold=False)
        client.disconnect()
        return 3

    def confirm():
        """Wait until the broker has handled what was published before (a probe round trip)."""
        token = f"probe-{next(probe_counter)}"
        ev = probes[token] = threading.Event()
        publish_probe(token)
        ok = ev.wait(5.0)
        probes.pop(token, None)
        return ok

    def alias_only(spec, key):
        """The metric with its name replaced by the alias the birth of `key` gave it."""
        if not isinstance(spec, dict) or spec.get("name") is None:
            return spec
        table = state.births.get(key)
        if table is None:
            raise ValueError(f"by_alias: no birth seen for {key}")
        alias = next((a for a, n in list(table["by_alias"].items()) if n == spec["name"]), None)
        if alias is None:
            raise ValueError(f"by_alias: {spec['name']!r} has no alias in the birth of {key}")
        spec = dict(spec, alias=alias)
        del spec["name"]
        return spec

    def send_cmd(kind, edge, device, metrics, with_dtypes):
        mtype = spb.MessageType.DCMD if kind == "dcmd" else spb.MessageType.NCMD
        payload_cls = spb.DCmd if kind == "dcmd" else spb.NCmd
        topic = spb.Topic(group_id=args.group, message_type=mtype, edge_node_id=edge,
                          device_id=device)
        msg = spb.Message(topic=topic, payload=payload_cls(timestamp=now_ms(), metrics=tuple(metrics)),
                          qos=spb.QoS.AT_MOST_ONCE, retain=False)
        client.publish(msg, include_dtypes=with_dtypes)
        return str(topic)

    def handle(kind, body):
        if kind == "rebirth":
            m = spb.Metric(timestamp=now_ms(), name=REBIRTH, datatype=spb.DataType.BOOLEAN, value=True)
            topic = send_cmd("ncmd", body, None, [m], args.cmd_datatypes)
            emit({"sent": "rebirth", "topic": topic, "confirmed": confirm()})
            return True
        try:
            cmd = json.loads(body)
            if not isinstance(cmd, dict) or len(cmd) != 1:
                raise ValueError("a command is a JSON object with one key")
            (name, arg), = cmd.items()
            if name == "exit":
                return False
            if name == "rebirth":
                return handle("rebirth", str(arg))
            if name in ("dcmd", "ncmd"):
                edge = arg["edge_node"]
                device = arg.get("device") if name == "dcmd" else None
                if name == "dcmd" and not device:
                    raise ValueError("a dcmd needs a device")
                specs = arg["metrics"]
                if arg.get("by_alias"):  # [tck-id-payloads-alias-data-cmd-requirement]
                    specs = [alias_only(s, (args.group, edge, device)) for s in specs]
                metrics = [command_metric(m) for m in specs]
                with_dtypes = bool(arg.get("include_datatypes", args.cmd_datatypes))
                topic = send_cmd(name, edge, device, metrics, with_dtypes)
                emit({"sent": name, "topic": topic, "confirmed": confirm()})
            elif name == "state":
                if state_topic is None:
                    raise ValueError("state needs --host-id")
                online = bool(arg["online"])
                ts = int(arg.get("timestamp", now_ms()))
                client.publish(state_message(online, ts))
                emit({"sent": "state", "online": online, "timestamp": ts, "confirmed": confirm()})
            else:
                raise ValueError(f"unknown command {name!r}")
        except Exception as e:  # noqa: BLE001 - a bad command is reported, the host carries on
            emit({"error": f"command {body.strip()!r}: {type(e).__name__}: {e}"})
        return True

    class Stop(Exception):
        pass

    def on_signal(_sig, _frame):
        raise Stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    if not args.no_stdin:
        def read_stdin():
            for line in sys.stdin:
                if line.strip():
                    actions.put(("stdin", line))
            actions.put(("eof", None))
        threading.Thread(target=read_stdin, daemon=True).start()

    try:
        while not _out["gone"].is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                kind, body = actions.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if kind == "eof":
                break
            if not handle(kind, body):
                break
    except Stop:
        pass

    # Graceful end: a host going offline says so ([tck-id-host-topic-phid-death-payload…]).
    try:
        if state_topic is not None:
            client.publish(state_message(False, now_ms()))
            confirm()
        client.disconnect()
    except Exception as e:  # noqa: BLE001
        emit({"error": f"disconnect: {e}"})
    emit({"event": "exit"})
    if _out["gone"].is_set():  # no "Exception ignored … BrokenPipeError" when Python exits
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
