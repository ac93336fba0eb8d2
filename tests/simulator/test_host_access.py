"""Nobody else can touch a simulated host (issue 11): its sockets are 0600 in private directories
whatever the umask, and its control socket answers only the state directory's owner and root
(SO_PEERCRED), even when a loose mode would let another user connect."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import pytest

from tests.unit.test_store_faults import NOBODY, as_user
from xetool.backends.simulator.control import HostUnreachable, call
from xetool.backends.simulator.layout import host_files
from xetool.errors import XeError
from xetool.xenstore.client import XsClient

from .conftest import make_backend, start_pv

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")


def _started_under(umask: int, state_dir: Path):  # type: ignore[no-untyped-def]
    old = os.umask(umask)
    try:
        b = make_backend(state_dir)
        b.ensure_running()
    finally:
        os.umask(old)
    return b


def test_sockets_are_owner_only_under_a_loose_umask(state_dir: Path) -> None:
    b = _started_under(0o000, state_dir)
    files = host_files(state_dir, b.host_uuid)
    for sock in (files.xenstored_socket, files.control_socket):
        st = sock.stat()
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, (sock, oct(st.st_mode))
    assert stat.S_IMODE(files.xenstored_socket.parent.stat().st_mode) & 0o077 == 0


def _raw_request(path: str, op: str, args: dict) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)
        try:
            s.sendall(json.dumps({"op": op, "args": args}).encode() + b"\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # a refused peer may be answered and closed before its request is even sent
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf)


def test_control_socket_refuses_another_user_even_when_it_could_connect(state_dir: Path) -> None:
    b = make_backend(state_dir)
    b.ensure_running()
    files = host_files(state_dir, b.host_uuid)
    with XsClient(b.xenstore_socket()) as xs:
        domid = start_pv(b, xs)
    # The operator loosened everything: any local user can reach and connect to the socket.
    for d in (state_dir, state_dir / "hosts", files.dir, files.control_socket.parent):
        os.chmod(d, 0o755)
    os.chmod(files.control_socket, 0o666)
    path = str(files.control_socket)
    reply = as_user(NOBODY, lambda: json.dumps(_raw_request(path, "destroy", {"domid": domid})))
    answer = json.loads(reply)
    assert answer["ok"] is False and answer["error"]["code"] == "PERMISSION_DENIED", reply
    assert f"uid {NOBODY}" in answer["error"]["params"]["message"]
    assert domid in {d["domid"] for d in b._call("list")}, "the domain was destroyed by another user"
    assert call(path, "ping")["host_uuid"] == b.host_uuid  # its owner still gets in


def test_socket_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    """The short /tmp/xetool-UID directory, if another user made it first, is not used."""
    base = tmp_path / "xetool-0"
    (base / "digest").mkdir(parents=True)
    os.chown(base, NOBODY, NOBODY)
    with pytest.raises(XeError) as err:
        call(str(base / "digest" / "control.sock"), "ping")
    assert err.value.code == "STATE_DIR_UNSAFE" and str(base) in err.value.params["path"]
    with pytest.raises(HostUnreachable):
        call(str(tmp_path / "xetool-1" / "nothing" / "control.sock"), "ping")
