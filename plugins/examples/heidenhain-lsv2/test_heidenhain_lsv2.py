#!/usr/bin/env python3
"""Runs the heidenhain-lsv2 plugin against our LSV2 simulator, as the bridge would run it.

    cd plugins/examples/heidenhain-lsv2 && python3 -m unittest -v test_heidenhain_lsv2

Needs pylsv2 1.8.0 (python3 -m pip install --user pylsv2==1.8.0); skipped, saying so, without.
The simulator runs with --speed 0 (its clock stands still) and a control file that each step
rewrites, so every state the test expects is one it set.
"""

import json
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PLUGIN = os.path.join(HERE, "heidenhain_lsv2.py")
SIM = os.path.join(HERE, "lsv2_sim.py")

try:
    import pyLSV2  # noqa: F401

    HAVE_PYLSV2 = True
except ImportError:
    HAVE_PYLSV2 = False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sim:
    """The simulator as a child process (so the test can stop it the way a control goes away)."""

    def __init__(self, port, control):
        self.port, self.control = port, control
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [sys.executable, SIM, "--port", str(self.port), "--speed", "0", "--control", self.control],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.proc.stdout.readline()
        if not line.startswith("LISTENING"):
            raise RuntimeError("simulator did not start: %r" % line)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)
        if self.proc:
            self.proc.stdout.close()
        self.proc = None


class PluginProcess:
    """The plugin as the bridge runs it: JSON lines on stdin/stdout, stderr collected."""

    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, PLUGIN],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.lines = queue.Queue()
        self.seen = []
        self.mark = 0  # expect() looks at messages from here on (see mark_now)
        self.stderr = []
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._drain, daemon=True).start()

    @staticmethod
    def _read(stream, q):
        for line in stream:
            q.put(line)
        q.put(None)

    def _drain(self):
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip("\n"))

    def send(self, msg):
        self.proc.stdin.write((msg if isinstance(msg, str) else json.dumps(msg)) + "\n")
        self.proc.stdin.flush()

    def next(self, timeout=10):
        line = self.lines.get(timeout=timeout)
        if line is None:
            raise AssertionError("plugin closed stdout; stderr:\n" + "\n".join(self.stderr))
        msg = json.loads(line)  # every line must be one JSON object
        self.seen.append(msg)
        return msg

    def mark_now(self):
        """Later expect() calls ignore what was read before this (call it before a change)."""
        self.mark = len(self.seen)

    def expect(self, what, pred, timeout=10):
        """Finds a message since the mark that matches, in any order, reading more as needed;
        fails naming `what` and showing what came instead."""
        for m in self.seen[self.mark :]:
            if pred(m):
                return m
        deadline = time.monotonic() + timeout
        start = self.mark
        while True:
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise queue.Empty
                msg = self.next(left)
            except queue.Empty:
                got = "\n".join(json.dumps(m) for m in self.seen[start:][-20:])
                raise AssertionError("no %s within %ss; got:\n%s\nstderr:\n%s" % (what, timeout, got, "\n".join(self.stderr[-10:])))
            if pred(msg):
                return msg

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for s in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                s.close()
            except OSError:
                pass


def obs(machine, key, value):
    return lambda m: m.get("type") == "obs" and m.get("machine") == machine and m.get("key") == key and m.get("value") == value


@unittest.skipUnless(HAVE_PYLSV2, "pylsv2 is not installed: python3 -m pip install --user pylsv2==1.8.0")
class PluginAgainstSimulator(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.control = os.path.join(self.tmp.name, "state.json")
        self.set_state(exec_state="AUTOMATIC", pgm_state="STARTED", program="TNC:\\nc_prog\\BRACKET_A.h")
        self.port = free_port()
        self.sim = Sim(self.port, self.control)
        self.sim.start()
        self.plugin = PluginProcess()

    def tearDown(self):
        self.plugin.close()
        self.sim.stop()
        self.tmp.cleanup()

    def set_state(self, **state):
        """Rewrites the simulator's control file atomically."""
        base = {"feed": 100.0, "spindle": 100.0, "rapid": 50.0, "tool": 7, "line": 1, "alarms": []}
        base.update(state)
        base.setdefault("current", base.get("program", ""))
        tmp = self.control + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(base, f)
        os.replace(tmp, self.control)

    def init(self, machines):
        self.plugin.send({"type": "init", "protocol": 1, "plugin": "lsv2", "settings": {}, "machines": machines})

    def test_a_full_session(self):
        p, address = self.plugin, "127.0.0.1:%d" % self.port

        hello = p.next()
        self.assertEqual(hello["type"], "hello", "hello must be the first line")
        self.assertEqual(hello["protocol"], 1)
        self.assertEqual(hello["name"], "heidenhain-lsv2")

        self.init([{"id": "tnc-1", "settings": {"address": address, "interval": 0.2, "reconnect_max": 1}}])
        p.expect("link connected", lambda m: m == {"type": "link", "machine": "tnc-1", "status": "connected"})
        p.expect("execution_state AUTOMATIC", obs("tnc-1", "execution_state", "AUTOMATIC"))
        p.expect("program_status STARTED", obs("tnc-1", "program_status", "STARTED"))
        p.expect("program", obs("tnc-1", "program", "TNC:\\nc_prog\\BRACKET_A.h"))
        p.expect("feed override", obs("tnc-1", "override.feed", 100.0))
        p.expect("tool", obs("tnc-1", "tool", 7))
        p.expect("no alarm", lambda m: m.get("type") == "condition" and m["level"] == "normal")

        # The observations follow the control.
        p.mark_now()
        self.set_state(exec_state="MANUAL", pgm_state="STOPPED", program="TNC:\\nc_prog\\TEST_42.h", feed=85.5)
        p.expect("execution_state MANUAL", obs("tnc-1", "execution_state", "MANUAL"))
        p.expect("program TEST_42", obs("tnc-1", "program", "TNC:\\nc_prog\\TEST_42.h"))
        p.expect("program_status STOPPED", obs("tnc-1", "program_status", "STOPPED"))
        p.expect("feed override 85.5", obs("tnc-1", "override.feed", 85.5))

        # An alarm is raised, then cleared.
        alarm = {"class": 2, "group": 3, "number": 1001, "text": "Coolant level low"}
        p.mark_now()
        self.set_state(exec_state="MANUAL", pgm_state="ERROR", program="TNC:\\nc_prog\\TEST_42.h", alarms=[alarm])
        raised = p.expect("alarm raised", lambda m: m.get("type") == "condition" and m["level"] == "fault")
        self.assertEqual(raised["machine"], "tnc-1")
        self.assertEqual(raised["key"], "alarm")
        self.assertEqual(raised["code"], "3-1001")
        self.assertEqual(raised["message"], "Coolant level low")
        p.mark_now()
        self.set_state(exec_state="MANUAL", pgm_state="ERROR_CLEARED", program="TNC:\\nc_prog\\TEST_42.h")
        cleared = p.expect("alarm cleared", lambda m: m.get("type") == "condition" and m["level"] == "normal")
        self.assertEqual(cleared["key"], "alarm")

        # Pings are answered; lines the plugin does not understand do not stop it.
        p.mark_now()
        p.send("this is not json")
        p.send({"type": "reconfigure", "x": 1})
        p.send({"type": "ping", "id": 99})
        p.expect("pong 99", lambda m: m == {"type": "pong", "id": 99}, timeout=5)

        # The control goes away: link lost, naming the address; it comes back: connected again,
        # and the current values are sent again.
        p.mark_now()
        self.sim.stop()
        lost = p.expect("link lost", lambda m: m.get("type") == "link" and m["status"] == "lost")
        self.assertEqual(lost["machine"], "tnc-1")
        self.assertIn(address, lost["detail"])
        p.mark_now()
        self.sim.start()
        p.expect("link connected again", lambda m: m.get("type") == "link" and m["status"] == "connected", timeout=15)
        p.expect("execution_state sent again", obs("tnc-1", "execution_state", "MANUAL"))

        # Every message named a configured machine.
        for m in p.seen:
            if m["type"] in ("obs", "condition", "link"):
                self.assertEqual(m["machine"], "tnc-1", m)

        # Shutdown: a clean exit, well within the 5 s the bridge allows.
        p.send({"type": "shutdown"})
        self.assertEqual(p.proc.wait(5), 0)

    def test_unreachable_control_is_a_lost_link_and_eof_stops_the_plugin(self):
        p = self.plugin
        self.assertEqual(p.next()["type"], "hello")
        dead = "127.0.0.1:%d" % free_port()
        self.init([{"id": "tnc-9", "settings": {"address": dead}}])
        lost = p.expect("link lost", lambda m: m.get("type") == "link")
        self.assertEqual(lost["status"], "lost")
        self.assertIn("cannot connect to " + dead, lost["detail"])
        p.proc.stdin.close()  # end of input means shut down
        self.assertEqual(p.proc.wait(5), 0)

    def test_bad_settings_stop_the_plugin_naming_the_machine(self):
        p = self.plugin
        self.assertEqual(p.next()["type"], "hello")
        self.init([{"id": "tnc-2", "settings": {"adress": "10.0.0.1"}}])
        self.assertEqual(p.proc.wait(5), 2)
        time.sleep(0.2)  # let the stderr reader catch up
        self.assertTrue(any("machine tnc-2" in l and "address is missing" in l for l in p.stderr), p.stderr)

    def test_protocol_mismatch_names_both_versions(self):
        p = self.plugin
        self.assertEqual(p.next()["type"], "hello")
        p.send({"type": "init", "protocol": 2, "plugin": "lsv2", "machines": []})
        self.assertEqual(p.proc.wait(5), 2)
        time.sleep(0.2)
        self.assertTrue(any("protocol 2" in l and "protocol 1" in l for l in p.stderr), p.stderr)


class Helpers(unittest.TestCase):
    """The plugin's pure helpers (no pylsv2 needed)."""

    def test_addresses(self):
        sys.path.insert(0, HERE)
        try:
            import heidenhain_lsv2 as plugin
        finally:
            sys.path.remove(HERE)
        self.assertEqual(plugin.parse_address("10.0.0.30"), ("10.0.0.30", 19000))
        self.assertEqual(plugin.parse_address("tnc-1.shop:19001"), ("tnc-1.shop", 19001))
        self.assertEqual(plugin.parse_address("[fe80::1]:19000"), ("fe80::1", 19000))
        for bad in ("", ":19000", "host:0", "host:port", "host:70000"):
            with self.assertRaises(ValueError, msg=bad):
                plugin.parse_address(bad)


if __name__ == "__main__":
    unittest.main()
