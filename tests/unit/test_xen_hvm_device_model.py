"""XenBackend.start_service("device-model") for an HVM domain, without Xen.

On Xen, libxl starts qemu-xen inside `xl create`; XenBackend adopts it: the pid from xenstore
(image/device-model-pid), the seed's RTL8139 NICs hot-added and its VNC port asked over QMP, the
taps bridged, console/vnc-port written. HVM cannot run in the lab (no hardware virtualisation under
QEMU's TCG, no qemu-system-xen in dom0), so what cannot exist here is replayed: the QMP answers,
captured from a real QEMU 7.2 (scripts/xenlab/capture-qmp, tests/data/qmp-device-model.jsonl),
and the ip(8) runs. xenstore is xetool's own xenstored on a real socket.
"""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import pytest

from xetool.backends.xen.backend import CmdResult, XenBackend
from xetool.backends.xen.hypercalls import Hypercalls
from xetool.errors import XeError
from xetool.xenstore.client import XsClient
from xetool.xenstore.server import ThreadedServer

CAPTURED = [json.loads(line) for line in
            (Path(__file__).resolve().parents[1] / "data" / "qmp-device-model.jsonl").read_text().splitlines()]
NICS = [("00:16:3e:5a:33:00", "xenbr0"), ("00:16:3e:5a:33:01", "xenbr1")]
DOMID = 7


class NoHypercalls(Hypercalls):
    def handle(self) -> None:
        return None


class Runner:
    """ip(8) as on a dom0 where the bridges do not exist yet; records every command."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str], timeout: float, env: Mapping[str, str] | None = None) -> CmdResult:
        self.calls.append(list(argv))
        return CmdResult(1 if list(argv[:3]) == ["ip", "link", "show"] else 0, "", "")


class ReplayQmp(threading.Thread):
    """A QMP server that answers with the captured messages, each only to the request it was
    captured for; anything else is recorded as a mismatch and closes the connection."""

    def __init__(self, path: Path, records: list[dict[str, Any]]) -> None:
        super().__init__(daemon=True)
        self.records, self.mismatch = records, ""
        self.received: list[dict[str, Any]] = []
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(str(path))
        self.listener.listen(1)
        self.listener.settimeout(10)

    def run(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn, conn.makefile("rwb") as f:
            f.write(json.dumps(self.records[0]["recv"]).encode() + b"\n")  # the greeting
            f.flush()
            for record in self.records[1:]:
                line = f.readline()
                if not line:
                    return
                request = json.loads(line)
                self.received.append(request)
                if request != record["send"]:
                    self.mismatch = f"got {request}, captured for {record['send']}"
                    return
                f.write(json.dumps(record["recv"]).encode() + b"\n")
                f.flush()


@pytest.fixture
def env() -> Iterator[tuple[Path, str]]:
    """(libxl's run dir, xenstored socket) with the device model's pid written as libxl does."""
    d = Path(tempfile.mkdtemp(prefix="xhvm-", dir="/tmp"))  # short: Unix socket paths
    try:
        with ThreadedServer(d / "xs.sock") as server:
            sock = str(server.server.socket_path)
            with XsClient(sock) as xs:
                xs.write(f"/local/domain/{DOMID}/image/device-model-pid", "4242")
            yield d, sock
    finally:
        shutil.rmtree(d, ignore_errors=True)


def backend(run_dir: Path, sock: str, runner: Runner) -> XenBackend:
    return XenBackend(runner, sock, config_dir=run_dir / "cfg", libxl_run_dir=str(run_dir), hypercalls=NoHypercalls())


def test_device_model_adopted_not_started(env: tuple[Path, str], tmp_path: Path) -> None:
    run_dir, sock = env
    qmp = ReplayQmp(run_dir / f"qmp-libxl-{DOMID}", CAPTURED[:-1])
    qmp.start()
    runner = Runner()
    pid = backend(run_dir, sock, runner).start_service("device-model", DOMID, NICS, tmp_path / "dm.log")
    qmp.join(5)
    assert pid == 4242  # libxl's qemu, not a new process
    assert not qmp.mismatch and len(qmp.received) == len(CAPTURED) - 2, qmp.mismatch or qmp.received
    with XsClient(sock) as xs:
        assert xs.read(f"/local/domain/{DOMID}/console/vnc-port") == "5900"
        assert xs.read(f"/local/domain/{DOMID}/console/vnc-listen") == "127.0.0.1"
    assert ["ip", "link", "set", "dev", "vif7.0-emu", "master", "xenbr0", "up"] in runner.calls
    assert ["ip", "link", "set", "dev", "vif7.1-emu", "master", "xenbr1", "up"] in runner.calls
    assert ["ip", "link", "add", "name", "xenbr1", "type", "bridge"] in runner.calls
    assert not any("qemu" in " ".join(c) for c in runner.calls)
    assert not (tmp_path / "dm.log").exists()


def test_qemu_error_is_an_emulator_error(env: tuple[Path, str], tmp_path: Path) -> None:
    run_dir, sock = env
    # the greeting, qmp_capabilities, then QEMU's answer to a NIC it cannot add
    qmp = ReplayQmp(run_dir / f"qmp-libxl-{DOMID}", [CAPTURED[0], CAPTURED[1], CAPTURED[-1]])
    qmp.start()
    with pytest.raises(XeError) as e:
        backend(run_dir, sock, Runner()).start_service("device-model", DOMID, NICS[:1], tmp_path / "dm.log")
    assert e.value.code == "FAILED_TO_START_EMULATOR" and "Duplicate ID 'net0'" in e.value.params["msg"]
    with XsClient(sock) as xs:
        assert xs.read_or(f"/local/domain/{DOMID}/console/vnc-port") is None


def test_no_device_model_from_libxl(env: tuple[Path, str], tmp_path: Path) -> None:
    run_dir, sock = env
    with XsClient(sock) as xs:
        xs.rm(f"/local/domain/{DOMID}/image/device-model-pid")
    runner = Runner()
    with pytest.raises(XeError) as e:
        backend(run_dir, sock, runner).start_service("device-model", DOMID, NICS, tmp_path / "dm.log")
    assert e.value.code == "FAILED_TO_START_EMULATOR" and "device-model-pid" in e.value.params["msg"]
    assert runner.calls == []
