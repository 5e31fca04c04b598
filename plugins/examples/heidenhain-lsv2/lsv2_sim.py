#!/usr/bin/env python3
"""A small Heidenhain LSV2 control simulator (TCP), for testing the heidenhain-lsv2 plugin.

LSV2 over TCP, as this simulator speaks it: every telegram, in both directions, is

    4 bytes   payload length, unsigned, big-endian (the 8 header bytes not counted)
    4 bytes   command or response name, ASCII (e.g. A_LG, R_RI, T_OK, S_RI)
    n bytes   payload

The client sends a command and the control answers with exactly one telegram: T_OK (done,
no data), S_xx (data), or T_ER with two bytes (error type, error code). Strings are Latin-1
and NUL-terminated; numbers are big-endian except the two doubles in the tool answer.

What is answered (enough for pylsv2's connect() and the plugin's polling):

    A_LG <login>\\0[password\\0]   log in (INSPECT, FILE, DNC, MONITOR, ...) -> T_OK
    A_LO [login\\0]               log out -> T_OK
    R_VR                         version strings control\\0 nc\\0 plc\\0 options\\0 -> S_VR
    R_VR <u8 id>                 one version item (5 id, 6 release, 7 SPLC) -> S_VR
    R_PR                         system parameters, 120 bytes -> S_PR
    R_CI <u32 what>              system information (turbo mode, DNC allowed, sampling) -> S_CI
    C_CC <u16 cmd>               buffer size 512..4096, secure file send -> T_OK
    R_RI <u16 what>              run information, needs login DNC:
        23 execution state u16, 24 program stack (u32 line, main\\0, current\\0),
        25 overrides (3 x u32, percent x 100: feed, spindle, rapid), 26 program state u16,
        27/28 first/next error (u16 class, u16 group, i32 number, text\\0) or T_ER 57 (no
        more errors), 30..34 uptime counters u32, 51 tool (u32 number, u16 index, u16 axis,
        f64 LE length, f64 LE radius)
    anything else                T_ER (1, 22 unknown telegram)

State: a program cycle (running, finished, idle), overrides that drift, and an alarm that
comes and goes, all derived from the time since start and --seed. A control file (--control,
JSON, re-read when it changes) overrides any part of it, for tests:

    {"exec_state": "AUTOMATIC", "pgm_state": "STOPPED", "program": "TNC:\\\\nc_prog\\\\A.h",
     "current": "...", "line": 12, "feed": 100.0, "spindle": 95.5, "rapid": 50.0, "tool": 7,
     "alarms": [{"class": 1, "group": 3, "number": 1001, "text": "Coolant low"}]}

Run: python3 lsv2_sim.py --port 19000 [--seed 1] [--control state.json] [--speed 1.0]
"""

import argparse
import asyncio
import json
import os
import random
import signal
import struct
import sys
import time

EXEC_STATES = {"MANUAL": 0, "MDI": 1, "PASS_REFERENCES": 2, "SINGLE_STEP": 3, "AUTOMATIC": 4, "UNDEFINED": 5}
PGM_STATES = {
    "STARTED": 0,
    "STOPPED": 1,
    "FINISHED": 2,
    "CANCELLED": 3,
    "INTERRUPTED": 4,
    "ERROR": 5,
    "ERROR_CLEARED": 6,
    "IDLE": 7,
    "UNDEFINED": 8,
}

# Error codes in T_ER answers (second byte).
ERR_UNKNOWN_TELEGRAM = 22
ERR_NO_PRIVILEGE = 23
ERR_BAD_PARAMETER = 50
ERR_NO_NEXT_ERROR = 57

MAX_PAYLOAD = 1 << 20

PROGRAMS = ["TNC:\\nc_prog\\BRACKET_A.h", "TNC:\\nc_prog\\FLANGE_80.h", "TNC:\\nc_prog\\HOUSING_7.h"]


def log(msg):
    print("lsv2-sim: " + msg, file=sys.stderr, flush=True)


def cstr(text):
    """A NUL-terminated Latin-1 string."""
    return text.encode("latin-1", "replace") + b"\0"


class Control:
    """The simulated control's state, derived from the clock, the seed and the control file."""

    RUN, DONE, IDLE = 20.0, 3.0, 7.0  # seconds of one program cycle, at speed 1
    ALARM_EVERY, ALARM_FOR = 45.0, 10.0

    def __init__(self, seed, speed, control_path):
        self.rng = random.Random(seed)
        self.seed = seed
        self.speed = speed
        self.start = time.monotonic()
        self.control_path = control_path
        self._forced = {}
        self._forced_mtime = None
        self.tool_base = self.rng.randint(1, 20)

    def forced(self):
        """The control file's overrides, re-read when its modification time changes."""
        if not self.control_path:
            return {}
        try:
            st = os.stat(self.control_path)
            mtime = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            self._forced, self._forced_mtime = {}, None
            return {}
        if mtime != self._forced_mtime:
            try:
                with open(self.control_path, encoding="utf-8") as f:
                    data = json.load(f)
                if not isinstance(data, dict):
                    raise ValueError("the control file must hold a JSON object")
                self._forced, self._forced_mtime = data, mtime
            except (OSError, ValueError) as e:
                log("control file %s ignored: %s" % (self.control_path, e))
        return self._forced

    def state(self):
        t = (time.monotonic() - self.start) * self.speed
        period = self.RUN + self.DONE + self.IDLE
        cycle, phase = divmod(t, period)
        program = PROGRAMS[(int(cycle) + self.seed) % len(PROGRAMS)]
        if phase < self.RUN:
            exec_state, pgm_state, line = "AUTOMATIC", "STARTED", 1 + int(phase * 7)
        elif phase < self.RUN + self.DONE:
            exec_state, pgm_state, line = "AUTOMATIC", "FINISHED", 0
        else:
            exec_state, pgm_state, line = "MANUAL", "IDLE", 0
        wobble = (int(t) * 7 + self.seed) % 11
        alarms = []
        if t % self.ALARM_EVERY >= self.ALARM_EVERY - self.ALARM_FOR:
            alarms.append({"class": 1, "group": 3, "number": 1001, "text": "Coolant level low"})
        s = {
            "exec_state": exec_state,
            "pgm_state": pgm_state,
            "program": program,
            "current": program,
            "line": line,
            "feed": 95.0 + wobble,
            "spindle": 100.0,
            "rapid": 50.0,
            "tool": self.tool_base + int(cycle) % 3,
            "alarms": alarms,
            "uptime": int(t),
        }
        s.update(self.forced())
        return s


class Session:
    """One client connection: logins and the error-reading cursor."""

    def __init__(self, control):
        self.control = control
        self.logins = set()
        self.error_cursor = 0

    def answer(self, cmd, payload):
        """Returns (response name, payload) for one telegram."""
        if cmd == "A_LG":
            name = payload.split(b"\0")[0].decode("latin-1")
            if not name:
                return self.error(ERR_BAD_PARAMETER)
            self.logins.add(name)
            return "T_OK", b""
        if cmd == "A_LO":
            name = payload.split(b"\0")[0].decode("latin-1")
            if name:
                self.logins.discard(name)
            else:
                self.logins.clear()
            return "T_OK", b""
        if cmd == "R_VR":
            return self.versions(payload)
        if cmd == "R_PR":
            return "S_PR", self.system_parameters()
        if cmd == "R_CI":
            if len(payload) != 4:
                return self.error(ERR_BAD_PARAMETER)
            what = struct.unpack("!L", payload)[0]
            if what == 1:  # turbo mode: bool
                return "S_CI", struct.pack("!L", 1) + struct.pack("!xxx?", False)
            if what == 2:  # DNC allowed: bool
                return "S_CI", struct.pack("!L", 1) + struct.pack("!xxx?", True)
            if what == 3:  # axes sampling rate: u32
                return "S_CI", struct.pack("!LL", 2, 3000)
            return self.error(ERR_BAD_PARAMETER)
        if cmd == "C_CC":
            if len(payload) < 2:
                return self.error(ERR_BAD_PARAMETER)
            what = struct.unpack("!H", payload[:2])[0]
            if what in (3, 4, 5, 6, 7, 19):  # buffer sizes, secure file send
                return "T_OK", b""
            return self.error(ERR_BAD_PARAMETER)
        if cmd == "R_RI":
            if "DNC" not in self.logins:
                return self.error(ERR_NO_PRIVILEGE)
            if len(payload) != 2:
                return self.error(ERR_BAD_PARAMETER)
            return self.run_info(struct.unpack("!H", payload)[0])
        return self.error(ERR_UNKNOWN_TELEGRAM)

    @staticmethod
    def error(code):
        return "T_ER", bytes([1, code])

    @staticmethod
    def versions(payload):
        if not payload:
            return "S_VR", cstr("TNC640") + cstr("340595 11 SP4") + cstr("PLC-SIM 1.0") + cstr("00000000")
        items = {5: "1234567 89", 6: "FCL 07", 7: "SPLC-SIM 1.0"}
        text = items.get(payload[0])
        if text is None:
            return Session.error(ERR_BAD_PARAMETER)
        return "S_VR", cstr(text)

    @staticmethod
    def system_parameters():
        # 14 u32, 8 u8, 8 u32, 2 u8, u16, 4 u8, 2 u32, 2 u16, u32 = 120 bytes.
        markers = [0, 10000, 0, 1000, 0, 1000, 0, 100, 0, 100, 0, 4000, 0, 100]
        bytes8 = [80, 0, 0, 0, 0, 0, 0, 0]  # the first is the maximum string length
        words = [0, 100, 0, 100, 0, 0, 0, 0]
        lsv2_version, flags = 6, 0
        max_block = 4096
        bin_ver, bin_rev, iso_ver, iso_rev = 1, 0, 1, 0
        hardware, flags_ex = 1, 0
        trace_line, scope_channels = 0, 0
        key = 0
        return struct.pack(
            "!14L8B8L2BH4B2L2HL",
            *markers,
            *bytes8,
            *words,
            lsv2_version,
            flags,
            max_block,
            bin_ver,
            bin_rev,
            iso_ver,
            iso_rev,
            hardware,
            flags_ex,
            trace_line,
            scope_channels,
            key,
        )

    def run_info(self, what):
        s = self.control.state()
        try:
            if what == 23:
                return "S_RI", struct.pack("!H", self.enum(EXEC_STATES, s["exec_state"]))
            if what == 24:
                return "S_RI", struct.pack("!L", int(s["line"])) + cstr(s["program"]) + cstr(s["current"])
            if what == 25:
                pct = [int(round(float(s[k]) * 100)) for k in ("feed", "spindle", "rapid")]
                return "S_RI", struct.pack("!LLL", *pct)
            if what == 26:
                return "S_RI", struct.pack("!H", self.enum(PGM_STATES, s["pgm_state"]))
            if what in (27, 28):
                if what == 27:
                    self.error_cursor = 0
                alarms = s.get("alarms") or []
                if self.error_cursor >= len(alarms):
                    return self.error(ERR_NO_NEXT_ERROR)
                a = alarms[self.error_cursor]
                self.error_cursor += 1
                head = struct.pack("!HHl", int(a.get("class", 1)), int(a.get("group", 0)), int(a["number"]))
                return "S_RI", head + cstr(str(a.get("text", "")))
            if 30 <= what <= 34:
                return "S_RI", struct.pack("!L", int(s.get("uptime", 0)) if what != 34 else 0)
            if what == 51:
                tool = int(s["tool"])
                return "S_RI", struct.pack("!LHH", tool, 0, 2) + struct.pack("<dd", 80.0 + tool, 5.0)
        except (KeyError, TypeError, ValueError, struct.error) as e:
            log("run info %d: state %r does not fit: %s" % (what, s, e))
            return self.error(ERR_BAD_PARAMETER)
        return self.error(ERR_BAD_PARAMETER)

    @staticmethod
    def enum(table, value):
        if isinstance(value, int):
            return value
        return table[str(value)]


async def serve_client(control, clients, reader, writer):
    peer = writer.get_extra_info("peername")
    clients.add(writer)
    session = Session(control)
    try:
        while True:
            head = await reader.readexactly(8)
            length = struct.unpack("!L", head[:4])[0]
            cmd = head[4:8].decode("latin-1")
            if length > MAX_PAYLOAD:
                log("%s: payload of %d bytes refused, closing" % (peer, length))
                break
            payload = await reader.readexactly(length) if length else b""
            if cmd == "T_OK":
                continue  # an acknowledgement in a block transfer; nothing to answer
            rsp, data = session.answer(cmd, payload)
            writer.write(struct.pack("!L", len(data)) + rsp.encode("ascii") + data)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
        pass  # the client left, or the simulator is stopping
    finally:
        clients.discard(writer)
        writer.close()


async def main_async(args):
    control = Control(args.seed, args.speed, args.control)
    clients = set()
    server = await asyncio.start_server(
        lambda r, w: serve_client(control, clients, r, w), args.host, args.port, reuse_address=True
    )
    port = server.sockets[0].getsockname()[1]
    log("listening on %s:%d" % (args.host, port))
    print("LISTENING %d" % port, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
        for w in list(clients):
            w.close()  # the clients see the connection closed, as when a control goes away
    log("stopped")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=19000, help="0 picks a free port (printed as LISTENING <port>)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--speed", type=float, default=1.0, help="how fast simulated time runs")
    p.add_argument("--control", help="JSON file whose keys override the simulated state")
    args = p.parse_args()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
