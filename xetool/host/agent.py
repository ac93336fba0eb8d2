"""`xetool host-agent`: the host half on its own machine, speaking host/calls.py's protocol on
stdin and stdout (as libvirt's virt-ssh-helper does behind `qemu+ssh://`): it greets with its
protocol version, then answers one request a line, streaming each step's progress before the
result or the registry error. It never opens the master's store; what the host holds lives in
the state directory it is given.

The protocol's descriptors are moved off 0 and 1 first, so that nothing the agent starts (a
simulated host, a console server) can write into the stream or keep it open after the agent
exits (ssh waits for every holder of its pipes).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from typing import Any, BinaryIO


def _protocol_streams() -> tuple[BinaryIO, BinaryIO]:
    """The stream as private descriptors (not inherited), with /dev/null on 0 and 1."""
    rfd, wfd = os.dup(0), os.dup(1)  # os.dup's copies are close-on-exec
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    return os.fdopen(rfd, "rb", buffering=0), os.fdopen(wfd, "wb")


def serve(state_dir: Path, reader: BinaryIO | None = None, writer: BinaryIO | None = None) -> None:
    from xetool import __version__
    from xetool.host.calls import PROTOCOL, dispatch, error_message

    if reader is None or writer is None:
        reader, writer = _protocol_streams()

    def send(message: dict[str, Any]) -> None:
        writer.write(json.dumps(message).encode() + b"\n")
        writer.flush()

    send({"hello": {"protocol": PROTOCOL, "xetool": __version__}})
    for line in iter(reader.readline, b""):
        try:
            request = json.loads(line)
            ident = request["id"]
        except (ValueError, TypeError, KeyError):
            from xetool.errors import XeError

            send({"id": None, "error": error_message(XeError("INTERNAL_ERROR", f"not a request: {line[:200]!r}"))})
            continue

        def emit(event: dict[str, Any], ident: Any = ident) -> None:
            send({"id": ident, **event})

        try:
            send(dispatch(state_dir, request, emit))
        except Exception as err:  # a bug in a handler: reported as one, and the agent goes on
            from xetool.errors import XeError

            send({"id": ident, "error": error_message(XeError("INTERNAL_ERROR", f"{type(err).__name__}: {err}"))})
