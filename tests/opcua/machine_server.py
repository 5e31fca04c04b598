"""An OPC UA server of a machine, written with Python asyncua: the independent peer that
shopbridge's OPC UA client driver reads in tests/opcua_client.rs.

    python3 tests/opcua/machine_server.py PORT WORK_DIR

It serves two shapes of machine at once:

- a SINUMERIK-like control: NC variables named by path in namespace 2
  (`ns=2;s=/Channel/State/progStatus`, `/Bag/State/opMode`, `/Channel/State/actParts`,
  `/Channel/Spindle/actSpeed`, `/Channel/ProgramInfo/progName`);
- an OPC 40501-shaped machine tool at Objects/Machines/Mill1: Monitoring/Channel1/ChannelState,
  ChannelMode, Monitoring/MachineTool/OperationMode and MachineryItemState/CurrentState,
  Monitoring/Spindle1/Override (with an EngineeringUnits property), Production/ActiveProgram/Name
  and State/CurrentState.

Endpoints: None, and Basic256Sha256 Sign / SignAndEncrypt (a self-signed certificate made in
WORK_DIR). Users: anonymous, or `operator` with password `secret`; any other user is refused.

It prints `READY` once it serves. Each line on stdin `set NAME JSON` sets a variable (NAME is
a SINUMERIK path or a 40501 path below Mill1) and answers `ok NAME`; `quit` stops it.
"""

import asyncio
import json
import sys
from pathlib import Path

from asyncua import Server, ua
from asyncua.crypto.permission_rules import User, UserRole


APP_URI = "urn:shopbridge-test:machine-server"


class Users:
    def get_user(self, iserver, username=None, password=None, certificate=None):
        if username is None:
            return User(role=UserRole.User)
        if username == "operator" and password == "secret":
            return User(role=UserRole.User)
        return None


async def make_cert(work: Path):
    """A self-signed certificate naming the address the tests connect to (127.0.0.1)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID
    from asyncua.crypto.cert_gen import (
        dump_private_key_as_pem,
        generate_private_key,
        generate_self_signed_app_certificate,
    )

    key_file = work / "server-key.pem"
    cert_file = work / "server-cert.der"
    if not key_file.exists():
        key = generate_private_key()
        cert = generate_self_signed_app_certificate(
            key,
            APP_URI,
            {"commonName": "machine-server"},
            [
                x509.UniformResourceIdentifier(APP_URI),
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
            ],
            extended=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            days=365,
        )
        key_file.write_bytes(dump_private_key_as_pem(key))
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    return cert_file, key_file


async def main(port: int, work: Path):
    work.mkdir(parents=True, exist_ok=True)
    server = Server(user_manager=Users())
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
    server.set_server_name("shopbridge test machine")
    await server.set_application_uri(APP_URI)
    server.set_security_policy(
        [
            ua.SecurityPolicyType.NoSecurity,
            ua.SecurityPolicyType.Basic256Sha256_Sign,
            ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
        ]
    )
    server.set_identity_tokens([ua.AnonymousIdentityToken, ua.UserNameIdentityToken])
    cert, key = await make_cert(work)
    await server.load_certificate(str(cert))
    await server.load_private_key(str(key))

    # The first namespace registered is ns=2: the SINUMERIK one, as on the control.
    sinu = await server.register_namespace("SinumerikVarProvider")
    mt = await server.register_namespace("urn:shopbridge-test:machine-tool")
    objects = server.nodes.objects
    nodes = {}

    # SINUMERIK: one folder, variables with path ids.
    folder = await objects.add_folder(sinu, "Sinumerik")
    for path, value, vtype in [
        ("/Channel/State/progStatus", 2, ua.VariantType.Int32),
        ("/Channel/State/chanStatus", 0, ua.VariantType.Int32),
        ("/Bag/State/opMode", 2, ua.VariantType.Int32),
        ("/Channel/State/actParts", 17, ua.VariantType.Int32),
        ("/Channel/Spindle/actSpeed", 1000.0, ua.VariantType.Double),
        ("/Channel/ProgramInfo/progName", "PART_4417.MPF", ua.VariantType.String),
    ]:
        nodes[path] = await folder.add_variable(
            ua.NodeId(path, sinu), ua.QualifiedName(path.rsplit("/", 1)[1], sinu), ua.Variant(value, vtype)
        )

    # OPC 40501-shaped machine tool.
    machines = await objects.add_folder(mt, "Machines")
    mill = await machines.add_object(mt, "Mill1")
    monitoring = await mill.add_object(mt, "Monitoring")
    channel = await monitoring.add_object(mt, "Channel1")
    machine_tool = await monitoring.add_object(mt, "MachineTool")
    item_state = await machine_tool.add_object(mt, "MachineryItemState")
    spindle = await monitoring.add_object(mt, "Spindle1")
    production = await mill.add_object(mt, "Production")
    program = await production.add_object(mt, "ActiveProgram")
    program_state = await program.add_object(mt, "State")
    lt = lambda s: ua.LocalizedText(s, "en")  # noqa: E731
    for parent, path, value, vtype in [
        (channel, "Monitoring/Channel1/ChannelState", 2, ua.VariantType.Int32),
        (channel, "Monitoring/Channel1/ChannelMode", 0, ua.VariantType.Int32),
        (machine_tool, "Monitoring/MachineTool/OperationMode", 1, ua.VariantType.Int32),
        (item_state, "Monitoring/MachineTool/MachineryItemState/CurrentState", lt("NotExecuting"), ua.VariantType.LocalizedText),
        (spindle, "Monitoring/Spindle1/Override", 100.0, ua.VariantType.Double),
        (program, "Production/ActiveProgram/Name", "O4417", ua.VariantType.String),
        (program_state, "Production/ActiveProgram/State/CurrentState", lt("Ready"), ua.VariantType.LocalizedText),
    ]:
        nodes[path] = await parent.add_variable(mt, path.rsplit("/", 1)[1], ua.Variant(value, vtype))
    # Metadata a browse must not subscribe to.
    await nodes["Monitoring/Spindle1/Override"].add_property(
        mt, "EngineeringUnits", ua.Variant("percent", ua.VariantType.String)
    )

    async with server:
        print("READY", flush=True)
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line or line.strip() == "quit":
                return
            parts = line.strip().split(" ", 2)
            if len(parts) != 3 or parts[0] != "set" or parts[1] not in nodes:
                print(f"error {line.strip()!r}", flush=True)
                continue
            node = nodes[parts[1]]
            value = json.loads(parts[2])
            vtype = await node.read_data_type_as_variant_type()
            if vtype == ua.VariantType.LocalizedText:
                value = lt(value)
            elif vtype == ua.VariantType.Double:
                value = float(value)
            await node.write_value(ua.Variant(value, vtype))
            print(f"ok {parts[1]}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), Path(sys.argv[2])))
