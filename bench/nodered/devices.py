"""Modbus TCP devices for the Node-RED comparison (pymodbus 3.16.1), several in one process.

    python3 devices.py --base-port 15020 --first 0 --count 10 --registers 10 --t0 1780000000.0 \
        --stats stats.jsonl

Device number i (`--first` <= i < `--first` + `--count`) listens on 127.0.0.1:(base-port + i),
unit 1, and has `--registers` holding registers from address 0, computed at the moment a read
is served (so a value is always what the device holds "now"):

    0-1   read_seq   u32, high word first: how many reads that started at address 0 this device
                     has served (the first is 1). Every poll of a bridge is one such read, so a
                     subscriber that misses a value of read_seq missed one poll's data.
    2-3   read_ms    u32: the device's wall clock when it served that read, epoch ms mod 2^32.
    4-5   counter    u32: floor((now - t0 - phase) / period), one step every `--period` seconds;
                     phase = frac(i x 0.618...) x period, so the devices step at times spread
                     evenly over the period and no poller's phase favours it.
    6-7   change_ms  u32: when `counter` took its current value, epoch ms mod 2^32.
    8..   data       u16 each: (counter * (address + 1) + i) mod 65536 with --data change
                     (every value changes at every counter step), or (address + i) mod 65536
                     with --data static (values that never change).

All processes and the subscriber are on one machine and read one wall clock, so
"receive time - read_ms" and "receive time - change_ms" are latencies without clock skew.

Every second one JSON line is appended to --stats: {"t": epoch s, "seq": [read_seq per device],
"reqs": requests served in total}. SIGTERM or SIGINT ends the process (exit 0).
"""

import argparse
import asyncio
import json
import logging
import signal
import time

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

HOST = "127.0.0.1"
MASK32 = 0xFFFFFFFF


class Device:
    def __init__(self, index, registers, t0, period, data_change):
        self.index = index
        self.registers = registers
        self.t0 = t0 + ((index * 0.6180339887498949) % 1.0) * period
        self.period = period
        self.data_change = data_change
        self.read_seq = 0
        self.requests = 0

    async def action(self, func_code, start, address, count, regs, set_values):
        """pymodbus calls this before it answers; we fill in the registers that were asked for."""
        if set_values is not None or func_code not in (3, 4):
            return None
        self.requests += 1
        now = time.time()
        counter = int((now - self.t0) / self.period)
        if address == 0:
            self.read_seq += 1
        fixed = (
            self.read_seq >> 16, self.read_seq & 0xFFFF,
            (int(now * 1000) & MASK32) >> 16, int(now * 1000) & 0xFFFF,
            (counter & MASK32) >> 16, counter & 0xFFFF,
        )
        change_ms = int(round((self.t0 + counter * self.period) * 1000)) & MASK32
        fixed += (change_ms >> 16, change_ms & 0xFFFF)
        i = self.index
        for a in range(address, address + count):
            off = a - start
            if a < 8:
                regs[off] = fixed[a]
            elif self.data_change:
                regs[off] = (counter * (a + 1) + i) & 0xFFFF
            else:
                regs[off] = (a + i) & 0xFFFF
        return None


async def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base-port", type=int, required=True)
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--registers", type=int, default=10)
    p.add_argument("--t0", type=float, required=True, help="epoch seconds of counter 0")
    p.add_argument("--period", type=float, default=1.0)
    p.add_argument("--data", choices=("change", "static"), default="change")
    p.add_argument("--stats", required=True)
    a = p.parse_args()
    if a.registers < 8:
        p.error("--registers must be at least 8 (the measurement registers)")
    logging.basicConfig(level=logging.WARNING)

    devices, servers = [], []
    for i in range(a.first, a.first + a.count):
        dev = Device(i, a.registers, a.t0, a.period, a.data == "change")
        sim = SimDevice(
            id=1,
            simdata=[SimData(0, values=[0] * a.registers, datatype=DataType.REGISTERS)],
            action=dev.action,
        )
        server = ModbusTcpServer(sim, address=(HOST, a.base_port + i))
        await server.serve_forever(background=True)
        devices.append(dev)
        servers.append(server)
    print(f"listening {HOST}:{a.base_port + a.first}..{a.base_port + a.first + a.count - 1}",
          flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    with open(a.stats, "a", buffering=1) as out:
        while not stop.is_set():
            out.write(json.dumps({
                "t": round(time.time(), 3),
                "seq": [d.read_seq for d in devices],
                "reqs": sum(d.requests for d in devices),
            }) + "\n")
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
    for server in servers:
        await server.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
