"""Just enough QMP (QEMU's JSON monitor) to ask the device model where its VNC server listens.

qemu-xen does not write ``console/vnc-port`` itself: libxl asks it with ``query-vnc`` once it runs
(libxl_dm.c) and writes the answer to xenstore. xetool does the same through this module.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from xetool.errors import XeError


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
        return json.loads(line)

    def execute(self, command: str) -> Any:
        self.sock.sendall(json.dumps({"execute": command}).encode() + b"\n")
        while True:
            msg = self.message()
            if "return" in msg:
                return msg["return"]
            if "error" in msg:
                raise OSError(f"{command}: {msg['error'].get('desc', msg['error'])}")
            # anything else is an asynchronous event: skip it


def vnc_port_from_qmp(path: str, domid: int, timeout: float = 10.0) -> int:
    """The TCP port of the device model's VNC server (QMP ``query-vnc``, field ``service``)."""
    try:
        qmp = _Qmp(path, time.monotonic() + timeout)
        try:
            if "QMP" not in qmp.message():
                raise OSError("no QMP greeting")
            qmp.execute("qmp_capabilities")
            answer = qmp.execute("query-vnc")
        finally:
            qmp.sock.close()
        if not answer.get("enabled") or not str(answer.get("service", "")).isdigit():
            raise OSError(f"VNC is not enabled: {answer}")
        return int(answer["service"])
    except (OSError, ValueError) as e:
        raise XeError("FAILED_TO_START_EMULATOR", domid, "qemu", f"QMP {path}: {e}") from None
