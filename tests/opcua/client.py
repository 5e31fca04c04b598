"""An independent OPC UA client (Python asyncua) checking shopbridge's server as a SCADA or MES
engineer would. Run by tests/opcua_server.rs against `shopbridge demo`:

    python3 tests/opcua/client.py browse    URL MACHINES
    python3 tests/opcua/client.py subscribe URL
    python3 tests/opcua/client.py methods   URL HTTP_BASE
    python3 tests/opcua/client.py secure    URL PKI_DIR WORK_DIR
    python3 tests/opcua/client.py events    URL MACHINE_NAME   (interactive, see tests/opcua_events.rs)
    python3 tests/opcua/client.py watch     URL SECONDS        (tests/faults: reconnects as SCADA does)

Each prints one JSON object with what it found and exits 0, or prints why it failed and
exits 1.
"""

import asyncio
import json
import sys
import time
import urllib.request
from pathlib import Path

from asyncua import Client, ua
from asyncua.common.events import select_clauses_from_evtype
from asyncua.crypto.security_policies import (
    SecurityPolicyAes256Sha256RsaPss,
    SecurityPolicyBasic256Sha256,
)

MT = "http://opcfoundation.org/UA/MachineTool/"
MACHINERY = "http://opcfoundation.org/UA/Machinery/"
DI = "http://opcfoundation.org/UA/DI/"
SB = "urn:shopbridge:UA"


class Failed(Exception):
    pass


def check(cond, why):
    if not cond:
        raise Failed(why)


async def namespaces(c):
    arr = await c.get_namespace_array()
    out = {}
    for uri in (MT, MACHINERY, DI, SB):
        check(uri in arr, f"namespace {uri} is not in the server's NamespaceArray {arr}")
        out[uri] = arr.index(uri)
    return out


async def type_def(node):
    return await node.read_type_definition()


async def machines(c, ns):
    folder = await c.nodes.objects.get_child([f"{ns[MACHINERY]}:Machines"])
    return await folder.get_children(refs=ua.ObjectIds.Organizes)


async def child(node, ns_index, name):
    return await node.get_child([f"{ns_index}:{name}"])


async def browse(url, expected):
    async with Client(url, timeout=30) as c:
        ns = await namespaces(c)
        mt, mach, di, sb = ns[MT], ns[MACHINERY], ns[DI], ns[SB]
        found = await machines(c, ns)
        check(len(found) == expected, f"expected {expected} machines under Machines, found {len(found)}")
        names = []
        total_nodes = 0
        for m in found:
            td = await type_def(m)
            check(td == ua.NodeId(13, mt), f"{m} has type {td}, expected MachineTool i=13 ({MT})")
            bn = await m.read_browse_name()
            names.append(bn.Name)
            expect = [
                (di, "Identification", 11),
                (mt, "Monitoring", 14),
                (mt, "Production", 21),
                (mt, "Notification", 7),
                (mt, "Equipment", 12),
            ]
            for idx, name, type_id in expect:
                n = await child(m, idx, name)
                check(await type_def(n) == ua.NodeId(type_id, mt), f"{bn.Name}/{name} has the wrong type")
            ident = await child(m, di, "Identification")
            for idx, name in [(di, "Manufacturer"), (di, "SerialNumber"), (di, "ProductInstanceUri")]:
                await (await child(ident, idx, name)).read_value()
            mon = await child(m, mt, "Monitoring")
            mtm = await child(mon, mt, "MachineTool")
            check(await type_def(mtm) == ua.NodeId(26, mt), "Monitoring/MachineTool type")
            op_mode = await (await child(mtm, mt, "OperationMode")).read_value()
            check(op_mode in range(0, 6), f"OperationMode {op_mode}")
            for addin, states in [
                ("MachineryItemState", {"NotAvailable", "OutOfService", "Executing", "NotExecuting"}),
                ("MachineryOperationMode", {"None", "Maintenance", "Setup", "Processing"}),
            ]:
                sm = await child(mtm, mach, addin)
                cs = await child(sm, 0, "CurrentState")
                text = (await cs.read_value()).Text
                check(text in states, f"{bn.Name} {addin} CurrentState {text!r}")
                state_id = await (await child(cs, 0, "Id")).read_value()
                state_name = (await c.get_node(state_id).read_browse_name()).Name
                check(state_name == text, f"{addin}: CurrentState {text} but Id names {state_name}")
            ch = await child(mon, sb, "Channel1")
            check(await type_def(ch) == ua.NodeId(16, mt), "Channel1 is a ChannelMonitoringType")
            for v in ["ChannelState", "ChannelMode", "FeedOverride", "RapidOverride"]:
                await child(ch, mt, v)
            sp = await child(mon, sb, "Spindle1")
            check(await type_def(sp) == ua.NodeId(22, mt), "Spindle1 is a SpindleMonitoringType")
            await child(sp, mt, "IsRotating")
            prog = await c.nodes.objects.get_child(
                [f"{mach}:Machines", f"{sb}:{bn.Name}", f"{mt}:Production", f"{mt}:ActiveProgram"]
            )
            check(await type_def(prog) == ua.NodeId(32, mt), "ActiveProgram type")
            await (await child(prog, mt, "Name")).read_value()
            st = await child(prog, mt, "State")
            check(await type_def(st) == ua.NodeId(15, mt), "ActiveProgram/State type")
            ctx = await child(m, sb, "Context")
            check(await type_def(ctx) == ua.NodeId(1001, sb), "Context is a MachineContextType")
            refs = await m.get_references(refs=ua.ObjectIds.HasInterface)
            check(
                any(r.NodeId == ua.NodeId(1002, sb) for r in refs),
                "the machine implements IShopFloorOperationsType",
            )
            for meth in ["SetStopReason", "SignIn", "SignOut", "ConfirmOperation"]:
                n = await child(m, sb, meth)
                check(await n.read_node_class() == ua.NodeClass.Method, f"{meth} is a method")
            msgs = await c.nodes.objects.get_child(
                [f"{mach}:Machines", f"{sb}:{bn.Name}", f"{mt}:Notification", f"{mt}:Messages"]
            )
            notifier = await msgs.read_event_notifier()
            check(ua.EventNotifier.SubscribeToEvents in notifier, "Messages is an event notifier")

            # The whole tree reads without errors.
            stack = [m]
            seen = set()
            while stack:
                n = stack.pop()
                if n.nodeid in seen:
                    continue
                seen.add(n.nodeid)
                total_nodes += 1
                for r in await n.get_children_descriptions():
                    if r.ReferenceTypeId in (
                        ua.NodeId(ua.ObjectIds.HasComponent),
                        ua.NodeId(ua.ObjectIds.HasProperty),
                        ua.NodeId(ua.ObjectIds.HasAddIn),
                        ua.NodeId(ua.ObjectIds.Organizes),
                    ):
                        stack.append(c.get_node(r.NodeId))
        return {"machines": names, "nodes": total_nodes}


class Changes:
    def __init__(self):
        self.seen = []

    def datachange_notification(self, node, val, data):
        dv = data.monitored_item.Value
        self.seen.append((str(node), val, dv.SourceTimestamp, time.time()))


async def subscribe(url):
    async with Client(url, timeout=30) as c:
        ns = await namespaces(c)
        nodes = []
        for m in await machines(c, ns):
            sig = await m.get_child([f"{ns[SB]}:Signals"])
            for name in ["spindle_speed", "line", "spindle_load", "execution"]:
                try:
                    nodes.append(await sig.get_child([f"{ns[SB]}:{name}"]))
                except ua.UaError:
                    pass
        check(nodes, "no signal nodes to subscribe to")
        handler = Changes()
        sub = await c.create_subscription(100, handler)
        await sub.subscribe_data_change(nodes, sampling_interval=100)
        started = time.time()
        initial = None
        while time.time() - started < 30:
            await asyncio.sleep(0.2)
            if initial is None and len(handler.seen) >= len(nodes):
                initial = len(handler.seen)
            if initial is not None and len(handler.seen) > initial:
                break
        check(initial is not None, f"only {len(handler.seen)} initial values for {len(nodes)} items")
        check(len(handler.seen) > initial, "no value changed within 30 s")
        node, val, source, got = handler.seen[-1]
        check(source is not None, "a notification without SourceTimestamp")
        await sub.delete()
        return {
            "items": len(nodes),
            "notifications": len(handler.seen),
            "first_change_after_s": round(time.time() - started, 2),
            "last": [node, str(val)],
        }


async def watch(url, seconds):
    """Watches every machine's part count for SECONDS the way a SCADA client does: when the
    server goes away, connect again (every 0.5 s) and subscribe again. Prints one line per
    session; returns the largest part count each session saw."""
    ended = time.time() + seconds
    sessions = []
    while time.time() < ended:
        try:
            async with Client(url, timeout=5) as c:
                ns = await namespaces(c)
                nodes = []
                for m in await machines(c, ns):
                    sig = await m.get_child([f"{ns[SB]}:Signals"])
                    nodes.append(await sig.get_child([f"{ns[SB]}:part_count"]))
                handler = Changes()
                sub = await c.create_subscription(100, handler)
                await sub.subscribe_data_change(nodes, sampling_interval=100)
                sessions.append(None)
                print(json.dumps({"event": "connected", "session": len(sessions)}), flush=True)
                while time.time() < ended:
                    await asyncio.sleep(0.2)
                    parts = [v for (_, v, _, _) in handler.seen if isinstance(v, int)]
                    if parts and (sessions[-1] is None or max(parts) > sessions[-1]):
                        sessions[-1] = max(parts)
                        print(json.dumps({"part": sessions[-1], "session": len(sessions)}), flush=True)
                    # A dead server: reading the server state fails.
                    await c.nodes.server_state.read_value()
        except Exception:  # noqa: BLE001 - any failure means: the server is away, try again
            await asyncio.sleep(0.5)
    return {"sessions": len(sessions), "max_part": sessions}


def records(http, kind):
    with urllib.request.urlopen(f"{http}/api/v1/records?kind={kind}&limit=10000") as r:
        return json.load(r)["records"]


async def call_status(obj, method, *args):
    try:
        out = await obj.call_method(method, *args)
        return "Good", out
    except ua.UaStatusCodeError as e:
        return ua.StatusCode(e.code).name, None


async def methods(url, http):
    out = {}
    async with Client(url, timeout=30) as c:
        c.set_user("operator")
        c.set_password("operator")
        await c.connect()
        try:
            ns = await namespaces(c)
            sb = ns[SB]
            m = (await machines(c, ns))[0]
            machine = (await m.read_browse_name()).Name
            seqs = {}
            for meth, args in [
                ("SignIn", ["ana"]),
                ("SetStopReason", ["setup", "new fixture for job 24173"]),
                ("ConfirmOperation", ["24173", "20"]),
            ]:
                status, result = await call_status(m, f"{sb}:{meth}", *args)
                check(status == "Good", f"{meth} as operator: {status}")
                seqs[meth] = int(result)
            # The context follows the journal: the operator shows up on the machine.
            ctx = await m.get_child([f"{sb}:Context"])
            deadline = time.time() + 10
            while time.time() < deadline:
                if await (await ctx.get_child([f"{sb}:OperatorId"])).read_value() == "ana":
                    break
                await asyncio.sleep(0.1)
            check(
                await (await ctx.get_child([f"{sb}:OperatorId"])).read_value() == "ana",
                "Context/OperatorId did not become ana",
            )
            check(
                await (await ctx.get_child([f"{sb}:StopReason"])).read_value() == "setup",
                "Context/StopReason is not setup",
            )
            check(
                await (await ctx.get_child([f"{sb}:JobId"])).read_value() == "24173",
                "Context/JobId is not 24173",
            )
            status, result = await call_status(m, f"{sb}:SignOut")
            check(status == "Good", f"SignOut: {status}")
            seqs["SignOut"] = int(result)
            bad = {}
            for meth, args in [
                ("SetStopReason", ["coffee", ""]),
                ("SignIn", [""]),
                ("SignIn", [ua.Variant(5, ua.VariantType.Int32)]),
                ("ConfirmOperation", ["24173"]),
            ]:
                status, _ = await call_status(m, f"{sb}:{meth}", *args)
                bad[f"{meth}{args!r}"] = status
                check(status == "BadInvalidArgument", f"{meth}{args!r}: {status}, expected BadInvalidArgument")
            out["bad_arguments"] = bad
        finally:
            await c.disconnect()

    # The records are in the journal, attributed to the user.
    recs = {r["seq"]: r for r in records(http, "command")}
    for meth, seq in seqs.items():
        check(seq in recs, f"{meth}: record {seq} is not in /api/v1/records")
        r = recs[seq]
        check(r["origin"] == {"channel": "opcua", "user": "operator"}, f"{meth}: origin {r['origin']}")
    check(recs[seqs["SetStopReason"]]["reason"] == "setup", "stop reason record")
    check(recs[seqs["SetStopReason"]]["note"] == "new fixture for job 24173", "stop reason note")
    out["records"] = {k: recs[v]["command"] for k, v in seqs.items()}

    # Viewers and anonymous clients may not.
    for user in ["viewer", None]:
        async with Client(url, timeout=30) as c:
            if user:
                c.set_user(user)
                c.set_password(user)
            await c.connect()
            try:
                ns = await namespaces(c)
                m = (await machines(c, ns))[0]
                status, _ = await call_status(m, f"{ns[SB]}:SetStopReason", "setup", "")
                check(status == "BadUserAccessDenied", f"{user or 'anonymous'} called a method: {status}")
                out[f"as_{user or 'anonymous'}"] = status
            finally:
                await c.disconnect()
    return out


async def make_cert(work, name):
    from cryptography.x509.oid import ExtendedKeyUsageOID
    from asyncua.crypto.cert_gen import setup_self_signed_certificate

    key = work / f"{name}.pem"
    cert = work / f"{name}.der"
    await setup_self_signed_certificate(
        key,
        cert,
        f"urn:shopbridge-test:{name}",
        "localhost",
        [ExtendedKeyUsageOID.CLIENT_AUTH],
        {"commonName": name},
    )
    return cert, key


async def secure_connect(url, policy, mode, cert, key, user, password):
    c = Client(url, timeout=30)
    c.application_uri = f"urn:shopbridge-test:{cert.stem}"
    await c.set_security(policy, str(cert), str(key), mode=mode)
    c.set_user(user)
    c.set_password(password)
    await c.connect()
    return c


async def refused(url, cert, key, password, what):
    """Connects with Basic256Sha256/SignAndEncrypt as operator; returns how the server refused."""
    try:
        c = await secure_connect(
            url, SecurityPolicyBasic256Sha256, ua.MessageSecurityMode.SignAndEncrypt,
            cert, key, "operator", password,
        )
    except Exception as e:  # noqa: BLE001 - any refusal will do; report which
        return type(e).__name__ + ": " + str(e)[:120]
    await c.disconnect()
    raise Failed(f"{what} was accepted")


async def secure(url, pki, work):
    pki = Path(pki)
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    out = {}
    trusted_cert, trusted_key = await make_cert(work, "trusted-client")
    # The plant's workflow: a new client is refused and its certificate kept in pki/rejected;
    # the administrator moves the file to pki/trusted; the client is let in.
    first = await refused(url, trusted_cert, trusted_key, "operator", "a certificate nobody trusted yet")
    out["first_contact"] = first.split(":")[0]
    rejected = list((pki / "rejected").glob("*trusted-client*.der"))
    check(len(rejected) == 1, f"the refused certificate is not in {pki / 'rejected'}")
    rejected[0].rename(pki / "trusted" / rejected[0].name)
    for policy, mode, name in [
        (SecurityPolicyBasic256Sha256, ua.MessageSecurityMode.SignAndEncrypt, "Basic256Sha256/SignAndEncrypt"),
        (SecurityPolicyBasic256Sha256, ua.MessageSecurityMode.Sign, "Basic256Sha256/Sign"),
        (SecurityPolicyAes256Sha256RsaPss, ua.MessageSecurityMode.SignAndEncrypt, "Aes256Sha256RsaPss/SignAndEncrypt"),
    ]:
        c = await secure_connect(url, policy, mode, trusted_cert, trusted_key, "operator", "operator")
        try:
            ns = await namespaces(c)
            m = (await machines(c, ns))[0]
            status, _ = await call_status(m, f"{ns[SB]}:SetStopReason", "maintenance", "secure")
            check(status == "Good", f"{name}: method call {status}")
            out[name] = "connected, method call Good"
        finally:
            await c.disconnect()

    out["wrong_password"] = await refused(url, trusted_cert, trusted_key, "wrong", "a wrong password")
    # A certificate nobody trusted is refused, and kept in pki/rejected.
    rogue_cert, rogue_key = await make_cert(work, "untrusted-client")
    out["untrusted_certificate"] = await refused(
        url, rogue_cert, rogue_key, "operator", "an untrusted certificate"
    )
    rejected = list((pki / "rejected").glob("*untrusted-client*.der"))
    check(rejected, f"the untrusted certificate is not in {pki / 'rejected'}")
    return out


class Events:
    def __init__(self):
        self.events = []
        self.values = []

    def event_notification(self, event):
        self.events.append(event)

    def datachange_notification(self, node, val, data):
        self.values.append(data.monitored_item.Value)


async def events(url, machine):
    """Prints `subscribed`, then the first alarm event as JSON, then `link lost` with the status a
    subscribed value turned to when the machine's link dropped."""
    async with Client(url, timeout=30) as c:
        ns = await namespaces(c)
        mt, sb = ns[MT], ns[SB]
        m = await c.nodes.objects.get_child([f"{ns[MACHINERY]}:Machines", f"{sb}:{machine}"])
        msgs = await m.get_child([f"{mt}:Notification", f"{mt}:Messages"])
        etype = c.get_node(ua.NodeId(1003, sb))
        handler = Events()
        sub = await c.create_subscription(100, handler)
        # Select every field of the type; filter with OfType. (asyncua's default where clause,
        # EventType InList [...], matches nothing on async-opcua 0.19, which compares only
        # numbers and booleans in filters; OfType is evaluated against the type tree.)
        evfilter = ua.EventFilter()
        evfilter.SelectClauses = await select_clauses_from_evtype([etype])
        of_type = ua.ContentFilterElement()
        of_type.FilterOperator = ua.FilterOperator.OfType
        of_type.FilterOperands.append(ua.LiteralOperand(Value=ua.Variant(etype.nodeid)))
        evfilter.WhereClause.Elements.append(of_type)
        await sub.subscribe_events(msgs, etype, evfilter=evfilter)
        state = await m.get_child([f"{mt}:Monitoring", f"{sb}:Channel1", f"{mt}:ChannelState"])
        # Ask for status changes explicitly (DataChangeFilter, trigger StatusValue): without a
        # filter async-opcua 0.19 reports value changes only, although Part 4 makes
        # StatusValue the default.
        status_value = ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValue)
        await sub._subscribe([state], mfilter=status_value, sampling_interval=100)
        print("subscribed", flush=True)
        deadline = time.time() + 30
        while not handler.events and time.time() < deadline:
            await asyncio.sleep(0.1)
        check(handler.events, "no event within 30 s")
        e = handler.events[0]
        print(json.dumps({
            "event_type": str(e.EventType),
            "source": e.SourceName,
            "message": e.Message.Text,
            "severity": e.Severity,
            "identifier": e.Identifier,
            "native_code": e.NativeCode,
            "level": e.Level,
        }), flush=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            if any(v.StatusCode.name == "BadCommunicationError" for v in handler.values):
                break
            await asyncio.sleep(0.1)
        bad = [v for v in handler.values if v.StatusCode.name == "BadCommunicationError"]
        check(bad, f"no BadCommunicationError after the link dropped: {[v.StatusCode.name for v in handler.values]}")
        check(bad[0].Value.Value is not None, "the last value was not kept")
        print(json.dumps({"link_lost_status": "BadCommunicationError", "kept": str(bad[0].Value.Value)}), flush=True)
        return {"done": True}


async def main(argv):
    what = argv[1]
    if what == "browse":
        return await browse(argv[2], int(argv[3]))
    if what == "subscribe":
        return await subscribe(argv[2])
    if what == "methods":
        return await methods(argv[2], argv[3])
    if what == "secure":
        return await secure(argv[2], argv[3], argv[4])
    if what == "events":
        return await events(argv[2], argv[3])
    if what == "watch":
        return await watch(argv[2], float(argv[3]))
    raise Failed(f"unknown scenario {what}")


if __name__ == "__main__":
    try:
        result = asyncio.run(main(sys.argv))
    except Failed as e:
        print(json.dumps({"failed": str(e)}))
        sys.exit(1)
    print(json.dumps(result, default=str))
