"""The QMP query that gives the device model's VNC port, against a real QEMU (no Xen needed:
the same monitor and VNC server as qemu-system-xen, without -xen-domid)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from xetool.backends.xen.qmp import vnc_port_from_qmp
from xetool.errors import XeError

QEMU = shutil.which("qemu-system-x86_64")


@pytest.mark.skipif(QEMU is None, reason="no qemu-system-x86_64 on this machine (Debian: qemu-system-x86)")
def test_vnc_port_from_qmp(tmp_path: Path) -> None:
    sock = tmp_path / "qmp.sock"
    argv = [QEMU, "-machine", "none", "-nodefaults", "-display", "none", "-vnc", "127.0.0.1:40,to=99",
            "-chardev", f"socket,id=qmp,path={sock},server=on,wait=off", "-mon", "chardev=qmp,mode=control"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        port = vnc_port_from_qmp(str(sock), 7, timeout=20)
        assert 5940 <= port < 6040
    finally:
        proc.terminate()
        proc.wait(10)


def test_no_device_model_is_an_emulator_error(tmp_path: Path) -> None:
    with pytest.raises(XeError) as e:
        vnc_port_from_qmp(str(tmp_path / "absent.sock"), 7, timeout=0.3)
    assert e.value.code == "FAILED_TO_START_EMULATOR" and e.value.params["vm"] == "7"
