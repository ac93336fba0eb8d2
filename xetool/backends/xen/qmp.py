"""Just enough QMP (QEMU's JSON monitor) to ask the device model where its VNC server listens.

qemu-xen does not write ``console/vnc-port`` itself: libxl asks it with ``query-vnc`` once it runs
(libxl_dm.c) and writes the answer to xenstore. xetool does the same through this module.
"""

from __future__ import annotations

import json
import socket
import time
from contextlib import contextmanager

from xetool.errors import XeError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any


class _Qmp:
    def __init__(self, path: str, deadline: float) -> None:
        self.deadline = deadline
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.buf = b""
        while True:  # qemu creates the socket a moment after it starts
            try:
                self.sock.settimeout(max(0.1, deadline - time.monotonic()))
                self.sock.connect(path)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def message(self) -> dict[str, Any]:
        while b"\n" not in self.buf:
            self.sock.settimeout(max(0.1, self.deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            if not chunk:
                raise OSError("QMP connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        reply: dict[str, Any] = json.loads(line)
        return reply

    def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        self.sock.sendall(json.dumps(request).encode() + b"\n")
        while True:
            msg = self.message()
            if "return" in msg:
                return msg["return"]
            if "error" in msg:
                raise OSError(f"{command}: {msg['error'].get('desc', msg['error'])}")
            # anything else is an asynchronous event: skip it


@contextmanager
def session(path: str, timeout: float = 10.0) -> Iterator[_Qmp]:
    """A QMP connection past the greeting and capability negotiation; OSError on any failure."""
    qmp = _Qmp(path, time.monotonic() + timeout)
    try:
        if "QMP" not in qmp.message():
            raise OSError("no QMP greeting")
        qmp.execute("qmp_capabilities")
        yield qmp
    finally:
        qmp.sock.close()


def vnc_port(qmp: _Qmp) -> int:
    """The TCP port of the device model's VNC server (``query-vnc``, field ``service``)."""
    answer = qmp.execute("query-vnc")
    if not answer.get("enabled") or not str(answer.get("service", "")).isdigit():
        raise OSError(f"VNC is not enabled: {answer}")
    return int(answer["service"])


def add_nic(qmp: _Qmp, index: int, mac: str, tap: str) -> None:
    """An emulated RTL8139 on a new tap, as the seed's device model has (-net nic,model=rtl8139)."""
    qmp.execute("netdev_add", {"type": "tap", "id": f"net{index}", "ifname": tap, "script": "no", "downscript": "no"})
    qmp.execute("device_add", {"driver": "rtl8139", "id": f"nic{index}", "netdev": f"net{index}", "mac": mac})


def vnc_port_from_qmp(path: str, domid: int, timeout: float = 10.0) -> int:
    """The device model's VNC port, in one QMP session."""
    try:
        with session(path, timeout) as qmp:
            return vnc_port(qmp)
    except (OSError, ValueError) as e:
        raise XeError("FAILED_TO_START_EMULATOR", domid, "qemu", f"QMP {path}: {e}") from None
