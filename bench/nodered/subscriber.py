"""The MQTT subscriber of the Node-RED comparison: records every update either system delivers.

    python3 subscriber.py --broker 127.0.0.1:PORT --mode json      --out updates.txt
    python3 subscriber.py --broker 127.0.0.1:PORT --mode sparkplug --out updates.txt --group bench

--mode json       Node-RED's messages: topic shop/<device>/registers, a JSON object with
                  read_seq, read_ms, counter, change_ms (see flow-template.json).
--mode sparkplug  shopbridge's Sparkplug B messages on spBv1.0/<group>/#: the aliases come from
                  the DBIRTHs; a DDATA can carry several values of one metric, in time order.

It connects with a persistent session (clean session off, a fixed client id) and subscribes with
QoS 1, so the broker keeps its subscription and queues QoS 1 messages for it across a broker
restart, and it reconnects within 0.2 s when the broker is back (QoS 0 messages, such as
Sparkplug DDATA, are not queued for a disconnected client by Mosquitto).

One line per event in --out (written when it stops, SIGTERM/SIGINT):
    s <recv_ms> <device> <read_seq> <read_ms> <origin>      a poll's data (origin: l live,
                                                           h Sparkplug is_historical, b birth)
    k <recv_ms> <device> <counter> <change_ms> <origin>     a counter value
    c <recv_ms> <rc>                                       connected (rc 0 = accepted)
    d <recv_ms> <rc>                                       disconnected
    n <recv_ms> <topic>                                    a Sparkplug NBIRTH/NDEATH/DDEATH
"""

import argparse
import json
import signal
import sys
import threading
import time

import paho.mqtt.client as mqtt

FIELDS = ("read_seq", "read_ms", "counter", "change_ms")


def now_ms():
    return time.time() * 1000.0


class Recorder:
    def __init__(self, mode, group):
        self.mode = mode
        self.group = group
        self.lines = []
        self.aliases = {}  # alias -> (device, field)
        self.messages = 0
        self.errors = 0

    def on_connect(self, client, _userdata, _flags, rc):
        self.lines.append(f"c {now_ms():.1f} {rc}")
        if rc == 0:
            topic = "shop/+/registers" if self.mode == "json" else f"spBv1.0/{self.group}/#"
            client.subscribe(topic, qos=1)

    def on_disconnect(self, _client, _userdata, rc):
        self.lines.append(f"d {now_ms():.1f} {rc}")

    def on_message(self, _client, _userdata, msg):
        t = now_ms()
        self.messages += 1
        try:
            if self.mode == "json":
                self.json_message(t, msg)
            else:
                self.sparkplug_message(t, msg)
        except Exception as e:  # noqa: BLE001 - counted and reported, never fatal
            self.errors += 1
            if self.errors <= 5:
                print(f"subscriber: cannot read a message on {msg.topic}: {e}", file=sys.stderr)

    def json_message(self, t, msg):
        o = json.loads(msg.payload)
        dev = o["device"]
        self.lines.append(f"s {t:.1f} {dev} {o['read_seq']} {o['read_ms']} l")
        self.lines.append(f"k {t:.1f} {dev} {o['counter']} {o['change_ms']} l")

    def sparkplug_message(self, t, msg):
        parts = msg.topic.split("/")
        if len(parts) < 4 or parts[0] != "spBv1.0":
            return
        kind = parts[2]
        if kind in ("NBIRTH", "NDEATH", "DDEATH"):
            self.lines.append(f"n {t:.1f} {msg.topic}")
        if kind not in ("DBIRTH", "DDATA") or len(parts) < 5:
            return
        dev = parts[4]
        p = Payload()
        p.ParseFromString(msg.payload)
        got = {f: [] for f in FIELDS}
        hist = {}
        if kind == "DBIRTH":
            for m in p.metrics:
                if m.HasField("name") and m.name.startswith("Signals/"):
                    field = m.name[len("Signals/"):]
                    if field in got:
                        self.aliases[m.alias] = (dev, field)
                        if m.HasField("string_value"):
                            got[field].append(int(m.string_value))
            origin = "b"
        else:
            origin = "l"
            for m in p.metrics:
                key = self.aliases.get(m.alias)
                if key is None or not m.HasField("string_value"):
                    continue
                got[key[1]].append(int(m.string_value))
                if m.is_historical:
                    hist[key[1]] = True
        o = "h" if hist.get("read_seq") else origin
        for seq, rms in zip(got["read_seq"], got["read_ms"]):
            self.lines.append(f"s {t:.1f} {dev} {seq} {rms} {o}")
        o = "h" if hist.get("counter") else origin
        for c, cms in zip(got["counter"], got["change_ms"]):
            self.lines.append(f"k {t:.1f} {dev} {c} {cms} {o}")


def main():
    global Payload
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--broker", required=True, help="host:port")
    p.add_argument("--mode", choices=("json", "sparkplug"), required=True)
    p.add_argument("--group", default="bench")
    p.add_argument("--client-id", default="bench-subscriber")
    p.add_argument("--out", required=True)
    p.add_argument("--keepalive", type=int, default=60,
                   help="MQTT keep-alive, seconds (paho's default; see README.md on the PINGREQ)")
    a = p.parse_args()
    if a.mode == "sparkplug":
        from pysparkplug._protobuf import Payload  # Sparkplug B protobuf classes
    host, port = a.broker.rsplit(":", 1)

    rec = Recorder(a.mode, a.group)
    client = mqtt.Client(client_id=a.client_id, clean_session=False)
    client.on_connect = rec.on_connect
    client.on_disconnect = rec.on_disconnect
    client.on_message = rec.on_message
    client.reconnect_delay_set(min_delay=0.1, max_delay=0.2)
    client.connect_async(host, int(port), keepalive=a.keepalive)

    stop = threading.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: stop.set())
    client.loop_start()
    print("started", flush=True)
    while not stop.wait(0.5):
        pass
    client.loop_stop()
    with open(a.out, "w") as out:
        out.write("\n".join(rec.lines) + "\n")
    print(f"messages {rec.messages} unreadable {rec.errors}", flush=True)


if __name__ == "__main__":
    main()
