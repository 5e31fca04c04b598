#!/usr/bin/env python3
"""shopbridge plugin: reads Heidenhain TNC controls over LSV2 with pylsv2 (protocol v1).

One thread per machine connects with pylsv2, polls execution state, program state, program
stack, overrides, the tool in the spindle and the error list every `interval` seconds, and
writes what changed as `obs` / `condition` lines; the link is reported as `link` lines. After
every (re)connect everything is sent again. The main thread reads the bridge's stdin: it
answers pings and stops everything on `shutdown` or end of input.

Machine settings: address "host[:port]" (port 19000 by default), interval (s, default 1),
timeout (s, default 5), reconnect_max (s, default 30). Keys: see README.md.

Dependencies: Python >= 3.9, pylsv2 == 1.8.0. Nothing here may crash the process on a
strange reply from a control: such errors are counted, logged to stderr (rate-limited) and
the value is sent as bad with reason decode_error.
"""

import json
import logging
import socket
import sys
import threading
import time

PROTOCOL = 1
NAME = "heidenhain-lsv2"
VERSION = "0.1.0"
DEFAULT_PORT = 19000
THREAD_STACK = 1024 * 1024

try:
    import pyLSV2
    from pyLSV2 import const as lsv2const
    from pyLSV2.err import LSV2ProtocolException, LSV2StateException
except ImportError as _e:  # pragma: no cover - depends on the installation
    pyLSV2 = None
    _IMPORT_ERROR = _e


def log(msg):
    """One line of free-form log text for the bridge (stderr)."""
    try:
        sys.stderr.write(msg.replace("\n", " ") + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


class Out:
    """Writes protocol lines to stdout, one whole line at a time, from any thread."""

    def __init__(self, stream):
        self._stream = stream
        self._lock = threading.Lock()
        self.broken = threading.Event()

    def send(self, *messages):
        """Writes the messages and flushes. Returns False once stdout is gone."""
        if self.broken.is_set():
            return False
        text = "".join(json.dumps(m, separators=(",", ":"), ensure_ascii=False) + "\n" for m in messages)
        with self._lock:
            try:
                self._stream.write(text)
                self._stream.flush()
            except (OSError, ValueError):
                self.broken.set()
                return False
        return True


class RateLimitedLog:
    """Logs the 1st, 10th, 100th, ... occurrence of each kind of problem."""

    def __init__(self, machine):
        self.machine = machine
        self.counts = {}

    def __call__(self, kind, detail):
        n = self.counts.get(kind, 0) + 1
        self.counts[kind] = n
        if n == 1 or n in (10, 100, 1000) or n % 10000 == 0:
            log("machine %s: %s (%d so far): %s" % (self.machine, kind, n, detail))


class LinkDown(Exception):
    """The control stopped answering; reconnect."""


# Exceptions that mean the connection itself is broken (socket errors, a stream out of step).
LINK_ERRORS = (OSError, EOFError, LinkDown) + (
    (LSV2StateException, LSV2ProtocolException) if pyLSV2 is not None else ()
)


def parse_address(text):
    """'host', 'host:port' or '[v6]:port' -> (host, port)."""
    text = str(text).strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    if not host:
        raise ValueError("address %r has no host" % text)
    if port == "":
        return host, DEFAULT_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("address %r has a bad port" % text)
    return host, int(port)


def number(settings, key, default, low, high):
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError("%s must be a number from %s to %s, got %r" % (key, low, high, value))
    return float(value)


class MachineConfig:
    def __init__(self, machine):
        if not isinstance(machine, dict) or not isinstance(machine.get("id"), str):
            raise ValueError("a machine in init has no id")
        self.id = machine["id"]
        settings = machine.get("settings") or {}
        if not isinstance(settings, dict):
            raise ValueError("machine %s: settings must be an object" % self.id)
        try:
            if "address" not in settings:
                raise ValueError("address is missing (e.g. \"192.168.10.40:19000\")")
            self.host, self.port = parse_address(settings["address"])
            self.interval = number(settings, "interval", 1.0, 0.05, 3600)
            self.timeout = number(settings, "timeout", 5.0, 0.1, 120)
            self.reconnect_max = number(settings, "reconnect_max", 30.0, 1, 3600)
        except ValueError as e:
            raise ValueError("machine %s: settings: %s" % (self.id, e)) from None
        self.address = "%s:%d" % (self.host, self.port)


def enum_name(value):
    """An IntEnum member's name (AUTOMATIC), else the raw value as text."""
    return getattr(value, "name", None) or str(value)


class Poller:
    """Polls one control; sends what changed since the last poll."""

    def __init__(self, cfg, out, stop):
        self.cfg = cfg
        self.out = out
        self.stop = stop
        self.problem = RateLimitedLog(cfg.id)
        self.last = {}  # key -> (value, quality, reason) last sent
        self.alarms = {}  # code -> message of alarms raised and not yet cleared
        self.resend = True
        self.con = None

    # -- output -------------------------------------------------------------------------------

    def obs(self, batch, key, value, quality=None, reason=None):
        state = (value, quality, reason)
        if not self.resend and self.last.get(key) == state:
            return
        self.last[key] = state
        m = {"type": "obs", "machine": self.cfg.id, "key": key, "value": value}
        if quality:
            m["quality"] = quality
            m["reason"] = reason or "device_error"
        batch.append(m)

    def bad(self, batch, key, reason):
        self.obs(batch, key, None, "bad", reason)

    def link(self, status, detail=None):
        m = {"type": "link", "machine": self.cfg.id, "status": status}
        if detail:
            m["detail"] = detail
        self.out.send(m)

    # -- connection -----------------------------------------------------------------------------

    def connect(self):
        con = pyLSV2.LSV2(self.cfg.host, port=self.cfg.port, timeout=self.cfg.timeout, safe_mode=False)
        try:
            con.connect()
            # DNC is the login that unlocks run information (R_RI); safe mode would refuse it.
            if not con.login(lsv2const.Login.DNC):
                raise LinkDown(
                    "control at %s refused login DNC (%s); is the DNC option enabled?" % (self.cfg.address, con.last_error)
                )
        except BaseException:
            self.close(con)
            raise
        self.con = con
        self.resend = True
        self.link("connected")
        batch = []
        v = con.versions
        self.obs(batch, "control", v.control or None)
        self.obs(batch, "nc_software", v.nc_sw or None)
        self.out.send(*batch)

    @staticmethod
    def close(con):
        if con is None:
            return
        try:
            con.disconnect()
        except LINK_ERRORS:
            pass  # the link is being dropped anyway, usually because it is already gone
        except Exception as e:  # an odd reply to the logout; keep it visible
            log("closing LSV2 connection: %s: %s" % (type(e).__name__, e))

    def no_answer(self, what):
        """After a failed call: no valid telegram at all means the link is down."""
        if self.con.last_error.e_type == -1:
            raise LinkDown("no answer from %s to %s" % (self.cfg.address, what))
        return "device_error"

    # -- one poll -------------------------------------------------------------------------------

    def item(self, batch, keys, read):
        """Runs one read; a decode problem marks its keys bad, a link problem propagates."""
        try:
            read(batch)
        except LINK_ERRORS:
            raise
        except Exception as e:  # pylsv2 raises ValueError/struct.error/... on odd replies
            self.problem("unexpected reply", "%s: %s: %s" % (keys[0], type(e).__name__, e))
            for key in keys:
                self.bad(batch, key, "decode_error")

    def read_execution(self, batch):
        state = self.con.execution_state()
        if state == lsv2const.ExecState.UNDEFINED and self.con.last_error.e_type != -1:
            self.bad(batch, "execution_state", "device_error")
        else:
            self.obs(batch, "execution_state", enum_name(state))

    def read_program_status(self, batch):
        state = self.con.program_status()
        if state == lsv2const.PgmState.UNDEFINED and self.con.last_error.e_type != -1:
            self.bad(batch, "program_status", "device_error")
        else:
            self.obs(batch, "program_status", enum_name(state))

    def read_stack(self, batch):
        stack = self.con.program_stack()
        if stack is None:
            reason = self.no_answer("the program stack query")
            for key in ("program", "program.current", "program.line"):
                self.bad(batch, key, reason)
            return
        self.obs(batch, "program", stack.main or None)
        self.obs(batch, "program.current", stack.current or None)
        self.obs(batch, "program.line", int(stack.line_no))

    def read_overrides(self, batch):
        ovr = self.con.override_state()
        keys = ("override.feed", "override.spindle", "override.rapid")
        if ovr is None:
            for key in keys:
                self.bad(batch, key, "device_error")
            return
        for key, value in zip(keys, (ovr.feed, ovr.spindle, ovr.rapid)):
            self.obs(batch, key, round(float(value), 2))

    def read_tool(self, batch):
        tool = self.con.spindle_tool_status()
        keys = ("tool", "tool.index", "tool.axis", "tool.length", "tool.radius")
        if tool is None:
            # Not every control answers this query; say so once per state change, not loudly.
            for key in keys:
                self.bad(batch, key, "device_error")
            return
        self.obs(batch, "tool", int(tool.number))
        self.obs(batch, "tool.index", int(tool.index))
        self.obs(batch, "tool.axis", str(tool.axis))
        for key, value in (("tool.length", tool.length), ("tool.radius", tool.radius)):
            value = float(value)
            if value == value and abs(value) != float("inf") and value != -1.0:
                self.obs(batch, key, round(value, 4))

    def read_errors(self, batch):
        messages = self.con.get_error_messages()
        active = {}
        for msg in messages:
            code = "%d-%d" % (msg.e_group, msg.e_number)
            active[code] = msg
        for code, msg in active.items():
            if self.resend or code not in self.alarms:
                batch.append(
                    {
                        "type": "condition",
                        "machine": self.cfg.id,
                        "key": "alarm",
                        "level": "fault",
                        "code": code,
                        "severity": "class %d" % msg.e_class,
                        "message": str(msg.e_text),
                    }
                )
        cleared = [code for code in self.alarms if code not in active]
        if not active and (cleared or self.resend):
            # Nothing active: one message clears the whole key.
            batch.append({"type": "condition", "machine": self.cfg.id, "key": "alarm", "level": "normal"})
        else:
            for code in cleared:
                batch.append(
                    {"type": "condition", "machine": self.cfg.id, "key": "alarm", "level": "normal", "code": code}
                )
        self.alarms = {code: msg.e_text for code, msg in active.items()}

    def poll(self):
        batch = []
        # The program stack goes first: its answer tells a dead link from a missing value.
        self.item(batch, ["program", "program.current", "program.line"], self.read_stack)
        self.item(batch, ["execution_state"], self.read_execution)
        self.item(batch, ["program_status"], self.read_program_status)
        self.item(batch, ["override.feed", "override.spindle", "override.rapid"], self.read_overrides)
        self.item(batch, ["tool"], self.read_tool)
        try:
            self.read_errors(batch)
        except LINK_ERRORS:
            raise
        except Exception as e:
            self.problem("unexpected error list", "%s: %s" % (type(e).__name__, e))
        self.resend = False
        if batch and not self.out.send(*batch):
            self.stop.set()

    # -- the thread ----------------------------------------------------------------------------

    def run(self):
        backoff = 1.0
        lost_detail = None
        while not self.stop.is_set():
            try:
                self.connect()
            except LINK_ERRORS as e:
                detail = "cannot connect to %s: %s" % (self.cfg.address, describe(e))
                if detail != lost_detail:
                    self.link("lost", detail)
                    lost_detail = detail
                self.problem("connect failed", detail)
                if self.stop.wait(backoff):
                    break
                backoff = min(backoff * 2, self.cfg.reconnect_max)
                continue
            except Exception as e:  # pylsv2 raises bare exceptions on odd connect replies
                detail = "connecting to %s: unexpected reply: %s: %s" % (self.cfg.address, type(e).__name__, e)
                if detail != lost_detail:
                    self.link("lost", detail)
                    lost_detail = detail
                self.problem("connect failed", detail)
                if self.stop.wait(backoff):
                    break
                backoff = min(backoff * 2, self.cfg.reconnect_max)
                continue
            lost_detail = None
            backoff = 1.0
            try:
                while not self.stop.is_set():
                    started = time.monotonic()
                    self.poll()
                    self.stop.wait(max(0.0, self.cfg.interval - (time.monotonic() - started)))
            except LINK_ERRORS as e:
                lost_detail = "lost connection to %s: %s" % (self.cfg.address, describe(e))
                self.link("lost", lost_detail)
                self.problem("link lost", lost_detail)
            except Exception as e:
                lost_detail = "connection to %s dropped after an unexpected reply: %s: %s" % (
                    self.cfg.address,
                    type(e).__name__,
                    e,
                )
                self.link("lost", lost_detail)
                self.problem("link lost", lost_detail)
            finally:
                con, self.con = self.con, None
                self.close(con)
            if self.stop.wait(backoff):
                break
            backoff = min(backoff * 2, self.cfg.reconnect_max)


def describe(e):
    if isinstance(e, socket.timeout):
        return "timed out"
    text = str(e) or type(e).__name__
    return text


def read_init(stdin):
    """Reads lines until the init message; returns it (or None at end of input)."""
    for line in stdin:
        line = line.strip()
        if not line:
            continue
        msg = json.loads(line)
        if not isinstance(msg, dict) or msg.get("type") != "init":
            raise ValueError("expected init as the first line, got %.200s" % line)
        return msg
    return None


def main():
    out = Out(sys.stdout)
    out.send({"type": "hello", "protocol": PROTOCOL, "name": NAME, "version": VERSION})
    if pyLSV2 is None:
        log("pylsv2 is not installed (%s); install it with: python3 -m pip install --user pylsv2==1.8.0" % _IMPORT_ERROR)
        return 2
    # pylsv2 logs every failed query as a warning; our own log is rate-limited instead.
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr, format="pylsv2: %(name)s: %(message)s")
    logging.getLogger("LSV2 Client").setLevel(logging.CRITICAL)
    logging.getLogger("LSV2 TCP").setLevel(logging.CRITICAL)

    try:
        init = read_init(sys.stdin)
    except ValueError as e:
        log("bad init: %s" % e)
        return 2
    if init is None:
        return 0
    if init.get("protocol") != PROTOCOL:
        log("the bridge speaks plugin protocol %s, this plugin speaks protocol %d" % (init.get("protocol"), PROTOCOL))
        return 2
    try:
        configs = [MachineConfig(m) for m in init.get("machines") or []]
    except ValueError as e:
        log(str(e))
        return 2

    # Small thread stacks: the default (8 MiB of address space each) would make a few dozen
    # machines exceed the memory limit (RLIMIT_AS) the bridge sets; polling needs little stack.
    threading.stack_size(THREAD_STACK)
    stop = threading.Event()
    threads = []
    for cfg in configs:
        t = threading.Thread(target=Poller(cfg, out, stop).run, name="lsv2 " + cfg.id, daemon=True)
        try:
            t.start()
        except RuntimeError as e:
            log("cannot start a thread for machine %s (%d machines; memory limit?): %s" % (cfg.id, len(configs), e))
            stop.set()
            return 2
        threads.append(t)

    line_no = 1
    for line in sys.stdin:
        line_no += 1
        line = line.strip()
        if not line:
            continue
        try:
            msg = json.loads(line)
        except ValueError as e:
            log("stdin line %d: not JSON (%s); ignored" % (line_no, e))
            continue
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind == "ping":
            out.send({"type": "pong", "id": msg.get("id")})
        elif kind == "shutdown":
            break
        else:
            log("stdin line %d: message type %r ignored" % (line_no, kind))
        if out.broken.is_set():
            break
    stop.set()
    deadline = time.monotonic() + 3.0
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
