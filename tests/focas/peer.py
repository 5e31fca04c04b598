"""An independent FOCAS/Ethernet client: PyPI `pyfocas` 0.1.1 reads a simulated Fanuc control.

Usage: python3 tests/focas/peer.py HOST:PORT [HOST:PORT ...]

For each control it connects (open packet), reads cnc_sysinfo, cnc_statinfo and macro
variables #500 (a set value), #100 (vacant) and #3027, and prints one JSON object keyed by
address on standard output. A variable pyfocas cannot decode (a vacant one: FF FF) is null.
tests/focas_driver.rs compares this with what shopbridge's own driver reads from the same
control, so that two implementations of the wire format written apart must agree.
"""

import json
import sys

from pyfocas.protocol.protocol import FOCAS


def read(address: str) -> dict:
    host, port = address.rsplit(":", 1)
    client = FOCAS(host, int(port))
    if not client.connect():
        raise SystemExit(f"pyfocas could not open {address}")
    sysinfo = client.get_sys_info()
    statinfo = client.get_status_info()
    macros = {}
    for n in (500, 100, 3027):
        try:
            macros[str(n)] = client.read_macro(n)[n]
        except Exception:  # pyfocas raises on a vacant variable
            macros[str(n)] = None
    if client.socket is not None:
        client.socket.close()
    return {
        "sysinfo": {
            "max_axis": sysinfo.max_axis,
            "cnc_type": sysinfo.cnc_type,
            "mt_type": sysinfo.mt_type,
            "series": sysinfo.series,
            "version": sysinfo.version,
            "axes": sysinfo.axes,
        },
        "statinfo": {
            "aut": statinfo.aut,
            "run": statinfo.run,
            "motion": statinfo.motion,
            "mstb": statinfo.mstb,
            "emergency": statinfo.emergency,
            "alarm": statinfo.alarm,
            "edit": statinfo.edit,
        },
        "macros": macros,
    }


def main() -> None:
    out = {a: read(a) for a in sys.argv[1:]}
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
