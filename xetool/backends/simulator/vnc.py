"""Stand-ins for qemu-dm and vncterm: real processes that export a (blank) VNC console.

`python -m xetool.backends.simulator.vnc --kind qemu|vncterm --domid N --xenstore SOCKET`
listens on 127.0.0.1 (a free port), speaks the RFB 3.8 handshake (VNC Authentication with the
password in --password-file, as the real ones do: devices/vncauth.py),
a ServerInit with a small framebuffer and the domain's name, writes its port to
/local/domain/N/console/vnc-port (qemu: also /local/domain/0/device-model/N/state = running),
and exits when the domain goes away (@releaseDomain and its directory gone), when the host's
xenstored goes away, or on SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import socket
import struct
import sys
import threading

from xetool.devices import vncauth
from xetool.errors import XeError
from xetool.xenstore.client import XsClient

WIDTH, HEIGHT = 640, 480
# 32 bpp, depth 24, little-endian, true colour, max 255 each, shifts 16/8/0, 3 bytes padding
PIXEL_FORMAT = struct.pack(">BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)


def _fail(conn: socket.socket, version: bytes, reason: bytes) -> None:
    """SecurityResult failed; RFB 3.8 adds the reason."""
    conn.sendall(struct.pack(">I", 1) + (struct.pack(">I", len(reason)) + reason if version >= b"RFB 003.008" else b""))


def serve_client(conn: socket.socket, name: str, password: str | None = None) -> None:
    """The RFB 3.8 handshake (VNC Authentication when there is a password), then read and
    ignore client messages until it disconnects."""
    kind = vncauth.VNC_AUTH if password is not None else 1  # 1: None
    try:
        conn.settimeout(30)
        conn.sendall(b"RFB 003.008\n")
        version = vncauth.recv_exact(conn, 12)
        if not version.startswith(b"RFB 003."):
            return
        if version >= b"RFB 003.007":
            conn.sendall(bytes([1, kind]))  # one security type
            if vncauth.recv_exact(conn, 1) != bytes([kind]):
                _fail(conn, version, b"unsupported security type")
                return
        else:
            conn.sendall(struct.pack(">I", kind))  # RFB 3.3: the server decides
        if password is not None:
            challenge = vncauth.challenge()
            conn.sendall(challenge)
            if not vncauth.check(password, challenge, vncauth.recv_exact(conn, 16)):
                _fail(conn, version, b"authentication failed")
                return
        if version >= b"RFB 003.008" or password is not None:
            conn.sendall(struct.pack(">I", 0))  # SecurityResult OK
        vncauth.recv_exact(conn, 1)  # ClientInit (shared flag)
        raw = name.encode()
        conn.sendall(struct.pack(">HH", WIDTH, HEIGHT) + PIXEL_FORMAT + struct.pack(">I", len(raw)) + raw)
        conn.settimeout(None)
        while conn.recv(4096):
            pass
    except (OSError, ConnectionError):
        pass
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="xetool-sim-vnc")
    ap.add_argument("--kind", choices=("qemu", "vncterm"), required=True)
    ap.add_argument("--domid", type=int, required=True)
    ap.add_argument("--xenstore", required=True)
    ap.add_argument("--display-base", type=int, default=0)
    ap.add_argument("--nic", action="append", default=[], help="mac,bridge (recorded only)")
    ap.add_argument("--password-file", required=True, help="the console password (VNC Authentication)")
    args = ap.parse_args(argv)
    try:
        password = vncauth.read_password(args.password_file)
    except OSError as e:
        print(f"{args.kind} for domain {args.domid}: cannot read the console password: {e}", file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    home = f"/local/domain/{args.domid}"
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    try:
        with XsClient(args.xenstore, timeout=5.0) as xs:
            if not xs.exists(home):
                print(f"domain {args.domid} has no {home}", file=sys.stderr)
                return 1
            name = xs.read_or(f"{home}/name", f"Domain-{args.domid}") or f"Domain-{args.domid}"
            xs.write_many({f"{home}/console/vnc-port": str(port), f"{home}/console/vnc-listen": "127.0.0.1"})
            if args.kind == "qemu":  # what it emulates, as a qemu command line, then ready
                nics = [f"-device rtl8139,mac={mac},bridge={bridge}" for mac, _, bridge in (n.partition(",") for n in args.nic[:8])]
                dm = f"/local/domain/0/device-model/{args.domid}"
                xs.write_many({f"{dm}/command": " ".join(nics + ["-usb", "-device usb-tablet", f"-vnc 127.0.0.1:{port}"]),
                               f"{dm}/state": "running"})

            def accept() -> None:
                while not stop.is_set():
                    try:
                        conn, _ = listener.accept()
                    except OSError:
                        return
                    threading.Thread(target=serve_client, args=(conn, name, password), daemon=True).start()

            threading.Thread(target=accept, daemon=True).start()
            with xs.watch("@releaseDomain") as w:
                while not stop.is_set():
                    if w.get(0.2) is not None and not xs.exists(home):
                        break
    except XeError as e:  # the host's xenstored went away: so did the domain
        print(f"{args.kind} for domain {args.domid}: {e.code}", file=sys.stderr)
    finally:
        listener.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
