"""A Modbus TCP test peer (pymodbus 3.16.1) that imitates field devices for shopbridge's Modbus
driver tests. The Rust integration tests run it as a subprocess:

    python3 tests/modbus/peer.py --map iologik|plc --port PORT      (PORT 0 = any free port)

stdout: first `listening 127.0.0.1:<port>`, then one `ok` or `error: <text>` per command.
stdin, one JSON object a line:
    {"set": {"unit": 1, "fc": 2, "address": 3, "values": [true]}}   live update (fc 1-4)
    {"restart": 2.0}   drop all connections, refuse connections for 2 s, serve again (same values)
    {"quit": true}     answer `ok`, exit 0 (EOF on stdin and SIGTERM also exit 0, silently)
Logs go to stderr only. All addresses are 0-based PDU addresses.
"""

import argparse
import asyncio
import json
import logging
import signal
import struct
import sys
import threading

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

HOST = "127.0.0.1"
LOG = logging.getLogger("peer")

# --- Device maps --------------------------------------------------------------------------
# A SimDevice with a 4-tuple `simdata` has four separate tables, in the order
# (coils, discrete inputs, holding registers, input registers). Each table is a list of
# SimData blocks; an address no block covers answers exception 0x02 (illegal data address),
# and so does a read that spans a defined and an undefined address. Every table needs at least
# one block: register tables can hold a DataType.INVALID placeholder (always exception 0x02),
# but bit tables only accept DataType.BITS, so unused bit tables get a 16-bit block parked at
# the top of the address space, where no test reads. Bit blocks are padded to a multiple of 16
# bits, so coils 0..7 also make coils 8..15 readable (always False).
UNUSED_BITS = SimData(0xFFF0, values=[False] * 16, datatype=DataType.BITS)
NO_REGISTERS = SimData(0, datatype=DataType.INVALID)

IOLOGIK_DI_WORD = 0x0030  # input register mirroring DI 0..15, bit n = DI n


def iologik_devices():
    """Unit 1: Moxa ioLogik E1212 (8 DI + 8 DIO). Unit 2: Moxa ioLogik E1240 (8 AI, 4-20 mA)."""
    e1212 = SimDevice(
        id=1,
        simdata=(
            [SimData(0, values=[False] * 8, datatype=DataType.BITS)],  # DO 0..7
            [SimData(0, values=[False] * 16, datatype=DataType.BITS)],  # DI 0..15
            [NO_REGISTERS],
            [
                # 16 DI counters, 2 registers each, high word first: ch c at 0x10+2c, 0x11+2c.
                SimData(0x0010, values=[0] * 32, datatype=DataType.REGISTERS),
                SimData(IOLOGIK_DI_WORD, values=0, datatype=DataType.REGISTERS),
            ],
        ),
    )
    e1240 = SimDevice(
        id=2,
        simdata=(
            [UNUSED_BITS],
            [UNUSED_BITS],
            [NO_REGISTERS],
            # AI 0..7 raw UINT16: 0 = 4 mA, 65535 = 20 mA.
            [SimData(0, values=[0] * 8, datatype=DataType.REGISTERS)],
        ),
    )
    return [e1212, e1240]


async def plc_action(func_code, _block_start, address, count, _registers, set_values):
    """SimDevice action hook, called on every access that passed the address checks. Returning
    an ExcCodes member turns the answer into that exception: holding register 50 is a
    "broken" register whose every read (fc 3) fails with 0x04 (server device failure)."""
    if func_code == 3 and set_values is None and address <= 50 < address + count:
        return ExcCodes.DEVICE_FAILURE
    return None


def little_word_float32(value):
    """IEEE-754 f32 as two registers, LOW word first (SimData's FLOAT32 is high word first)."""
    high, low = struct.unpack(">HH", struct.pack(">f", value))
    return [low, high]


def plc_devices():
    """Unit 1: a small PLC with one value of each common encoding in holding registers."""
    holding = [
        SimData(0, values=0b101, datatype=DataType.UINT16),  # status word = 5
        SimData(1, values=-5, datatype=DataType.INT16),  # 65531 on the wire
        SimData(2, values=123456, datatype=DataType.UINT32),  # [0x0001, 0xE240]
        SimData(4, values=little_word_float32(12.5), datatype=DataType.REGISTERS),  # [0, 0x4148]
        SimData(6, values=-1.25, datatype=DataType.FLOAT64),  # [0xBFF4, 0, 0, 0]
        # Two chars per register, high byte first, NUL-padded to 8 registers.
        SimData(10, values="O1234".ljust(16, "\0"), datatype=DataType.STRING),
        SimData(20, values=list(range(100, 110)), datatype=DataType.REGISTERS),  # 20..29
        SimData(50, values=0, datatype=DataType.REGISTERS),  # reads fail, see plc_action
    ]
    inputs = [SimData(0, values=-2, datatype=DataType.INT32)]  # [0xFFFF, 0xFFFE]
    return [
        SimDevice(id=1, simdata=([UNUSED_BITS], [UNUSED_BITS], holding, inputs), action=plc_action)
    ]


MAPS = {"iologik": iologik_devices, "plc": plc_devices}


# --- Commands -----------------------------------------------------------------------------
# Values live inside the server object (server.async_setValues / async_getValues take
# device id, function code 1-4, address). The same server object is re-listened on restart,
# so current values survive it.
class Peer:
    def __init__(self, map_name, port):
        self.map_name = map_name
        self.devices = MAPS[map_name]()
        self.units = {d.id for d in self.devices}
        self.port = port
        self.server = None

    async def listen(self):
        """Start (or restart) listening; returns the bound port."""
        if self.server is None:
            self.server = ModbusTcpServer(self.devices, address=(HOST, self.port))
        else:
            # The listener was set up for the port given at construction, which may be 0;
            # point it at the port actually bound first, so a restart reuses it.
            self.server.init_setup_connect_listen(HOST, self.port)
        await self.server.serve_forever(background=True)
        self.port = self.server.transport.sockets[0].getsockname()[1]
        return self.port

    async def stop(self):
        """Close the listener and every client connection."""
        if self.server is not None:
            await self.server.shutdown()

    async def set_values(self, spec):
        """The `set` command: check the request, write it, keep derived registers in step."""
        unit, fc, address, values = (spec.get(k) for k in ("unit", "fc", "address", "values"))
        if unit not in self.units:
            raise ValueError(f"unknown unit {unit!r}")
        if fc not in (1, 2, 3, 4):
            raise ValueError(f"fc must be 1, 2, 3 or 4, not {fc!r}")
        if not isinstance(address, int) or isinstance(address, bool) or not 0 <= address <= 65535:
            raise ValueError(f"bad address {address!r}")
        if not isinstance(values, list) or not values:
            raise ValueError("values must be a non-empty list")
        if fc in (1, 2):
            if not all(isinstance(v, bool) for v in values):
                raise ValueError("fc 1/2 values must be booleans")
        elif not all(type(v) is int and 0 <= v <= 0xFFFF for v in values):
            raise ValueError("fc 3/4 values must be integers 0..65535")
        try:
            # Raises TypeError when an address is undefined in the map.
            await self.server.async_setValues(unit, fc, address, values)
        except TypeError as exc:
            raise ValueError(f"address {address}+{len(values)} not in the map for fc {fc}") from exc
        if self.map_name == "iologik" and unit == 1 and fc == 2:
            # Keep the ioLogik's DI value word consistent with the DI bits.
            bits = await self.server.async_getValues(1, 2, 0, 16)
            word = sum(1 << n for n, on in enumerate(bits) if on)
            await self.server.async_setValues(1, 4, IOLOGIK_DI_WORD, [word])

    async def handle(self, line):
        """Run one command line (raises on a bad one); returns True when the peer should exit."""
        cmd = json.loads(line)
        if not isinstance(cmd, dict) or len(cmd) != 1:
            raise ValueError("expected one of {set|restart|quit: ...}")
        if "set" in cmd:
            if not isinstance(cmd["set"], dict):
                raise ValueError("set needs an object")
            await self.set_values(cmd["set"])
        elif "restart" in cmd:
            secs = cmd["restart"]
            if isinstance(secs, bool) or not isinstance(secs, (int, float)) or secs < 0:
                raise ValueError("restart needs a number of seconds >= 0")
            await self.stop()
            LOG.info("restart: down for %s s", secs)
            await asyncio.sleep(secs)
            await self.listen()
        elif "quit" in cmd:
            return True
        else:
            raise ValueError(f"unknown command {next(iter(cmd))!r}")
        return False


def reply(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# --- Main loop ----------------------------------------------------------------------------
# stdin is read by a daemon thread (it never blocks exit) that hands lines to the event loop
# through a queue; None in the queue means "stop" (EOF, or SIGTERM/SIGINT).
def start_stdin_reader(loop, lines):
    def pump():
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=pump, daemon=True).start()


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--map", required=True, choices=sorted(MAPS))
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    loop = asyncio.get_running_loop()
    lines = asyncio.Queue()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lines.put_nowait, None)

    peer = Peer(args.map, args.port)
    try:
        port = await peer.listen()
    except (RuntimeError, OSError) as exc:
        LOG.error("cannot listen on %s:%s: %s", HOST, args.port, exc)
        return 1
    reply(f"listening {HOST}:{port}")
    start_stdin_reader(loop, lines)

    while (line := await lines.get()) is not None:
        if not line.strip():
            continue
        try:
            done = await peer.handle(line)
        except Exception as exc:  # any bad command is answered, never fatal
            reply("error: " + " ".join(str(exc).split()))
            continue
        reply("ok")
        if done:
            break
    await peer.stop()
    return 0


if __name__ == "__main__":
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="peer: %(message)s")
    sys.exit(asyncio.run(main()))
