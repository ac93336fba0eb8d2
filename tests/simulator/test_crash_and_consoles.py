"""Killing the host process is a host crash; the qemu-dm / vncterm stand-ins are real VNC servers."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from xetool.backends.simulator import SimulatorBackend, list_hosts, stop_host
from xetool.devices import vncauth
from xetool.errors import XeError
from xetool.xenstore.client import XsClient
from .conftest import make_backend, start_pv


def test_killing_the_host_process_is_a_host_crash(state_dir: Path, host: SimulatorBackend) -> None:
    with XsClient(host.xenstore_socket()) as xs:
        domid = start_pv(host, xs)
        host.unpause(domid)
        with xs.watch("/local/domain") as w:
            w.get(1)
            pid = list_hosts(state_dir)[0].pid
            assert pid
            os.kill(pid, signal.SIGKILL)
            t0 = time.monotonic()
            with pytest.raises(XeError) as e:  # a waiting watcher learns at once
                w.get(30)
            assert e.value.code == "XENSTORE_UNREACHABLE"
            assert time.monotonic() - t0 < 2
    t0 = time.monotonic()
    assert host.is_live() is False
    for call in (host.list_domains, host.physinfo, lambda: host.unpause(domid)):
        with pytest.raises(XeError) as e:
            call()
        assert e.value.code == "HOST_OFFLINE"
    with pytest.raises(XeError) as e:
        XsClient(host.xenstore_socket()).read("/local/domain/0/name")
    assert e.value.code == "XENSTORE_UNREACHABLE"
    assert time.monotonic() - t0 < 2  # fast failures, no hang
    assert list_hosts(state_dir)[0].live is False
    # a restart is an empty host: dom0 only, a fresh xenstore
    host.ensure_running()
    assert [d.domid for d in host.list_domains()] == [0]
    with XsClient(host.xenstore_socket()) as xs:
        assert not xs.exists(f"/local/domain/{domid}")


def test_a_wedged_host_is_offline_and_never_replaced(state_dir: Path, host: SimulatorBackend) -> None:
    """A host that runs but does not answer (SIGSTOP) is HOST_OFFLINE within a bound: a second
    process beside it would be a second host with the same name and sockets."""
    pid = list_hosts(state_dir)[0].pid
    assert pid
    boot = host.boot_id()
    os.kill(pid, signal.SIGSTOP)
    try:
        assert host.is_live() is False and host.reachability() == "unresponsive"
        t0 = time.monotonic()
        with pytest.raises(XeError) as e:
            host.ensure_running()
        assert e.value.code == "HOST_OFFLINE" and e.value.params["name"] == "sim1"
        assert "does not answer" in e.value.params["reason"] and time.monotonic() - t0 < 5
        assert list_hosts(state_dir)[0].pid == pid
        stop_host(state_dir, host.host_uuid)  # the operator's way out: stop it, then start it again
        assert host.reachability() == "down"
        host.ensure_running()
        assert host.is_live() and list_hosts(state_dir)[0].pid != pid and host.boot_id() != boot
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def rfb_handshake(port: int, password: str | None) -> tuple[int, int, bytes]:
    """Log in with VNC Authentication; the ServerInit's size and name."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        init = vncauth.client_login(s, password)
    width, height = struct.unpack(">HH", init[:4])
    return width, height, init[24:]


def rfb_security_none(port: int) -> bytes:
    """What a client that asks for no authentication gets: the SecurityResult and reason."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        f = s.makefile("rb")
        f.read(12)
        s.sendall(b"RFB 003.008\n")
        types = f.read(f.read(1)[0])
        assert 1 not in types, "the console offers security type None"
        s.sendall(b"\x01")
        return f.read()


@pytest.mark.parametrize("kind", ["vncterm", "qemu"])
def test_vnc_stand_ins(host: SimulatorBackend, kind: str, tmp_path: Path) -> None:
    secret = tmp_path / "vnc.passwd"
    vncauth.write_password(str(secret), "s3cretPW")
    with XsClient(host.xenstore_socket()) as xs:
        domid = start_pv(host, xs, name="console-vm")
        argv = host.console_server_argv(domid) if kind == "vncterm" else \
            host.device_model_argv(domid, 0, [("00:16:3e:00:00:09", "xenbr0")])
        argv += ["--password-file", str(secret)]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            port = int(xs.wait_until(f"/local/domain/{domid}/console/vnc-port", lambda v: bool(v), 15) or 0)
            if kind == "qemu":
                xs.wait_for_value(f"/local/domain/0/device-model/{domid}/state", "running", 5)
            with pytest.raises(PermissionError, match="authentication failed"):
                rfb_handshake(port, "wrong")
            with pytest.raises(PermissionError):
                rfb_handshake(port, None)
            assert rfb_security_none(port).startswith(b"\0\0\0\1")  # SecurityResult: failed
            width, height, name = rfb_handshake(port, "s3cretPW")
            assert (width, height) == (640, 480) and name == b"console-vm"
            host.destroy(domid)  # the domain goes away: so does its console server
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_vnc_stand_in_exits_on_sigterm_and_on_host_crash(state_dir: Path, host: SimulatorBackend, tmp_path: Path) -> None:
    secret = tmp_path / "vnc.passwd"
    vncauth.write_password(str(secret), "pw")
    with XsClient(host.xenstore_socket()) as xs:
        domid = start_pv(host, xs)
        argv = [*host.console_server_argv(domid), "--password-file", str(secret)]
        procs = [subprocess.Popen(argv, stderr=subprocess.DEVNULL) for _ in range(2)]
        try:
            xs.wait_until(f"/local/domain/{domid}/console/vnc-port", lambda v: bool(v), 15)
            time.sleep(0.5)  # both have connected
            procs[0].send_signal(signal.SIGTERM)
            assert procs[0].wait(timeout=5) == 0
            pid = list_hosts(state_dir)[0].pid
            assert pid
            os.kill(pid, signal.SIGKILL)
            assert procs[1].wait(timeout=5) == 0
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()


def test_unreachable_host_from_a_fresh_backend_object(state_dir: Path) -> None:
    b = make_backend(state_dir)
    t0 = time.monotonic()
    assert not b.is_live()
    with pytest.raises(XeError) as e:
        b.list_domains()
    assert e.value.code == "HOST_OFFLINE"
    assert time.monotonic() - t0 < 1


def test_host_process_exits_when_its_state_dir_is_removed(state_dir: Path, host: SimulatorBackend) -> None:
    import shutil

    pid = list_hosts(state_dir)[0].pid
    assert pid
    shutil.rmtree(state_dir / "hosts")
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}/cmdline").exists() and Path(f"/proc/{pid}/cmdline").read_bytes():
        assert time.monotonic() < deadline, "the orphaned host process is still running"
        time.sleep(0.1)
