"""XenBackend against the real Xen 4.17 of the lab's dom0 (scripts/xenlab/run)."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_xen_backend_argv import NoHypercalls
from tests.xen.lab import emit, guest_config, wait_console
from xetool.backends.xen.backend import XenBackend
from xetool.errors import XeError


def xl(*args: str) -> str:
    return subprocess.run(["xl", *args], capture_output=True, text=True, timeout=120, check=True).stdout


def wait_for(what: str, check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"{what}: not within {timeout:g}s")


def free_memory_back(backend: XenBackend, before_kib: int) -> bool:
    # freed pages are scrubbed before Xen counts them free again: allow a moment
    return wait_for("free memory back", lambda: backend.physinfo().free_memory_kib >= before_kib - 1024, 30)


def rfb_type(port: int, text: str, password: str) -> bytes:
    """Connect as a VNC client (VNC Authentication), take one full frame, type text; returns the
    frame's pixels."""
    from xetool.devices import vncauth

    with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
        c.settimeout(30)
        w, h = struct.unpack(">HH", vncauth.client_login(c, password)[:4])
        c.sendall(struct.pack(">BBHHHH", 3, 0, 0, 0, w, h))
        vncauth.recv_exact(c, 4)
        _x, _y, rw, rh, _enc = struct.unpack(">HHHHi", vncauth.recv_exact(c, 12))
        pixels = vncauth.recv_exact(c, rw * rh * 4)
        for ch in text:
            key = 0xFF0D if ch == "\r" else ord(ch)
            c.sendall(struct.pack(">BBxxI", 4, 1, key) + struct.pack(">BBxxI", 4, 0, key))
        time.sleep(1)
    return pixels


def check_console_server(backend: XenBackend, xs: Any, domid: int, name: str) -> None:
    """xetool's vncterm on the guest's console: port in xenstore, text on screen, keys typed."""
    from xetool.devices import vncauth

    secret = Path(tempfile.mkdtemp(prefix="xetool-console-")) / "vnc.passwd"
    password = vncauth.new_password()
    vncauth.write_password(str(secret), password)
    proc = subprocess.Popen(backend.console_server_argv(domid) + ["--password-file", str(secret)],
                            stderr=subprocess.PIPE, text=True)
    try:
        port_path = f"/local/domain/{domid}/console/vnc-port".encode()
        port = int(wait_for("console/vnc-port", lambda: xs.read(port_path, b"").decode(), 60))
        assert 5901 <= port < 6000
        pixels = rfb_type(port, "echo VNC-$((40+2))\r", password)
        assert any(pixels[i] for i in range(0, len(pixels), 4)), "the console screen is blank"
        log = wait_console(name, "VNC-42", 60)
        assert "echo VNC-$((40+2))" in log  # the shell's echo of what was typed
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(secret.parent, ignore_errors=True)


def test_physinfo_is_xl_info(backend: XenBackend) -> None:
    info = backend.physinfo()
    assert info.nr_cpus == 2 and "pv" in info.capabilities
    assert 0 < info.free_memory_kib < info.total_memory_kib
    assert info.xen_version.startswith("4.17")
    assert backend.is_live()
    backend.ensure_running()


def test_list_domains_has_dom0(backend: XenBackend) -> None:
    dom0 = backend.domain_info(0)
    assert dom0 is not None and dom0.name == "Domain-0" and not dom0.paused
    assert dom0.uuid == "00000000-0000-0000-0000-000000000000" and not dom0.hvm
    assert [d.domid for d in backend.list_domains()][:1] == [0]
    assert backend.domain_info(4242) is None


def test_pv_guest_lifecycle(backend: XenBackend, xs: Any, reaper: list[str]) -> None:
    cfg = guest_config("xetool-life")
    reaper.append(cfg.name)
    free_before = backend.physinfo().free_memory_kib

    t = time.monotonic()
    domid = backend.create_domain(cfg)
    backend.build_domain(domid, cfg)
    emit(f"XENLAB TIME create_domain+build_domain (xl create -p -e, PV 128/256 MiB): {time.monotonic() - t:.2f}s")

    dom = backend.domain_info(domid)
    assert dom is not None and dom.paused and dom.uuid == cfg.uuid and dom.vcpus == 1
    assert dom.memory_kib == 128 * 1024 and dom.shutdown_reason is None
    assert f"{cfg.name} " in xl("list")
    # a resync's list of domains: one hypercall and xenstore's names, as `xl list` says them
    by_xl = XenBackend(hypercalls=NoHypercalls()).list_domains()
    seen = [(d.domid, d.uuid, d.name, d.paused, d.hvm, d.vcpus) for d in backend.list_domains()]
    assert seen == [(d.domid, d.uuid, d.name, d.paused, d.hvm, d.vcpus) for d in by_xl]
    assert (domid, cfg.uuid, cfg.name, True, False, 1) in seen

    # the tree libxl wrote, read through pyxs on the real xenstored
    home = xs.get_domain_path(domid)
    assert xs.read(home + b"/name") == cfg.name.encode()
    assert xs.read(home + b"/domid") == str(domid).encode()
    assert xs.read(home + b"/vm") == f"/vm/{cfg.uuid}".encode()
    assert xs.read(f"/vm/{cfg.uuid}/uuid".encode()) == cfg.uuid.encode()
    assert xs.read(home + b"/memory/static-max") == b"262144"
    assert xs.read(home + b"/memory/target") == b"131072"
    assert xs.read(home + b"/cpu/0/availability") == b"online"
    assert xs.read(home + b"/cpu/1/availability") == b"offline"
    assert xs.read(home + b"/console/tty").startswith(b"/dev/pts/")
    assert xs.exists(home + b"/store/ring-ref") and xs.exists(home + b"/control/shutdown")

    # the seed's remaining steps, done by the toolstack through the backend
    backend.set_vcpu_affinity(domid, 0, [1])
    assert backend.vcpu_list(domid)[0].hard_affinity == (1,)
    backend.set_vcpu_affinity(domid, 0, [])
    assert backend.vcpu_list(domid)[0].hard_affinity is None
    backend.set_sched_params(domid, 512, 50)
    params = backend.sched_params(domid)
    assert (params.weight, params.cap) == (512, 50)
    backend.set_sched_params(domid, 256, 0)  # a 50 % cap would slow the boot below for nothing
    backend.set_memory_target(domid, 120 * 1024)
    assert xs.read(home + b"/memory/target") == str(120 * 1024).encode()

    t = time.monotonic()
    backend.unpause(domid)
    log = wait_console(cfg.name, "GUEST-READY")
    emit(f"XENLAB TIME unpause to guest userspace: {time.monotonic() - t:.1f}s")
    assert "GUEST-BOOTED: Linux" in log and "hypervisor=xen" in log
    backend.pause(domid)
    assert backend.domain_info(domid).paused  # type: ignore[union-attr]
    backend.unpause(domid)
    check_console_server(backend, xs, domid, cfg.name)

    # hypervisor-level poweroff: the domain stays, shut down, until the toolstack reaps it
    backend.shutdown(domid, "poweroff")
    dom = wait_for("shut down", lambda: backend.domain_info(domid))
    assert dom.shutdown_reason == "poweroff"
    backend.destroy(domid)
    assert backend.domain_info(domid) is None
    assert not xs.exists(home) and not xs.exists(f"/vm/{cfg.uuid}".encode())
    assert free_memory_back(backend, free_before)


def test_errors_are_registry_errors(backend: XenBackend) -> None:
    with pytest.raises(XeError) as e:
        backend.pause(4242)
    assert e.value.code == "HYPERVISOR_ERROR" and e.value.params["domid"] == "4242"
    bad = guest_config("xetool-bad", kernel="/nonexistent/vmlinuz")
    with pytest.raises(XeError) as e:
        backend.create_domain(bad)
    assert e.value.code == "HYPERVISOR_ERROR" and "xetool-bad" not in xl("list")
    with pytest.raises(XeError) as e:
        backend.shutdown(4242, "sideways")
    assert e.value.code == "INVALID_VALUE"
