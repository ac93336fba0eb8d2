"""XenBackend without Xen: the commands it runs and the files it writes, through a fake runner.
(The same calls against the real xl run in tests/xen under scripts/xenlab/run.)"""

from __future__ import annotations

import os
from pathlib import Path
import shutil
import tempfile
from typing import Iterator, Mapping, Sequence

import pytest

from xetool.backends.base import DomainConfig, PhysInfo
from xetool.backends.xen.backend import CmdResult, XenBackend, xl_config
from xetool.backends.xen.hypercalls import Hypercalls
from xetool.errors import XeError
from xetool.xenstore.client import XsClient
from xetool.xenstore.server import ThreadedServer

DATA = Path(__file__).resolve().parents[1] / "data"
UUID = "4d181961-b175-487b-b67b-bef0f77d0ffc"


class FakeXl:
    """Answers like the lab's xl, from the captured output; records every command."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], Mapping[str, str] | None]] = []
        self.answers: dict[tuple[str, ...], CmdResult] = {
            ("xl", "info"): CmdResult(0, (DATA / "xl-info.txt").read_text(), ""),
            ("xl", "domid", "g"): CmdResult(0, "1\n", ""),
            ("xl", "list", "-v", "1"): CmdResult(0, (DATA / "xl-list-v-paused.txt").read_text(), ""),
            ("xl", "list", "-l", "1"): CmdResult(0, (DATA / "xl-list-l-one.json").read_text(), ""),
            ("xl", "pause", "9"): CmdResult(0, "", "libxl: error: libxl_domain.c:1: Domain 9:Pausing domain\n"),
        }

    def __call__(self, argv: Sequence[str], timeout: float, env: Mapping[str, str] | None = None) -> CmdResult:
        assert timeout > 0
        self.calls.append((list(argv), env))
        for key in (tuple(argv), tuple(argv[:2])):
            if key in self.answers:
                return self.answers[key]
        return CmdResult(0, "", "")


class NoHypercalls(Hypercalls):
    """As on a machine without Xen's Python binding: every answer comes from xl."""

    def handle(self) -> None:
        return None


def config(**kw: object) -> DomainConfig:
    fields: dict[str, object] = dict(uuid=UUID, name="g", hvm=False, memory_static_max_kib=262144,
                                     memory_target_kib=131072, vcpus_max=2, vcpus_at_startup=1,
                                     kernel="/k", ramdisk="/r", cmdline="console=hvc0")
    fields.update(kw)
    return DomainConfig(**fields)  # type: ignore[arg-type]


def test_pv_xl_config() -> None:
    text = xl_config(config())
    assert 'type = "pv"' in text and 'kernel = "/k"' in text and 'extra = "console=hvc0"' in text
    assert "memory = 128\n" in text and "maxmem = 256\n" in text
    assert "vcpus = 1\n" in text and "maxvcpus = 2\n" in text
    assert 'on_poweroff = "preserve"' in text and 'on_crash = "preserve"' in text


def test_hvm_xl_config_platform_flags() -> None:
    cfg = config(hvm=True, kernel="/usr/lib/xen-4.17/boot/hvmloader", shadow_multiplier=2.0,
                 platform={"nx": "false", "viridian": "true", "pae": "true", "acpi": "1", "apic": "true",
                           "acpi_s3": "0", "acpi_s4": "0"})
    text = xl_config(cfg)
    for line in ('type = "hvm"', "viridian = 1", "pae = 1", "acpi = 1", "apic = 1", "acpi_s3 = 0",
                 "acpi_s4 = 0", 'cpuid = "host,nx=0"', 'vnclisten = "127.0.0.1"', 'usbdevice = "tablet"',
                 'device_model_override = "/usr/libexec/xen-qemu-system-i386"'):
        assert line in text
    assert "firmware_override" not in text
    assert "shadow_memory = 8\n" in text  # 2 * 4 * (256 * 2 + 2 * 256) KiB = 8 MiB
    with pytest.raises(XeError) as e:
        xl_config(cfg, has_hvm=False)
    assert e.value.code == "HYPERVISOR_ERROR"


def test_bad_configs_are_refused() -> None:
    for bad in (config(name="two words"), config(kernel=""), config(cmdline='say "hi"'), config(address_size=32)):
        with pytest.raises(XeError):
            xl_config(bad)


def test_create_and_build(tmp_path: Path) -> None:
    xl = FakeXl()
    backend = XenBackend(xl, config_dir=tmp_path, hypercalls=NoHypercalls())
    assert backend.create_domain(config()) == 1
    assert xl.calls[0][0] == ["xl", "create", "-p", "-e", str(tmp_path / f"{UUID}.cfg")]
    assert (tmp_path / f"{UUID}.cfg").read_text() == xl_config(config())
    backend.build_domain(1, config(uuid=UUID))
    with pytest.raises(XeError) as e:
        backend.build_domain(1, config(uuid="00000000-0000-0000-0000-000000000001", vcpus_at_startup=2))
    assert "expected" in e.value.params["reason"] and e.value.params["domid"] == "1"


def test_control_commands() -> None:
    xl = FakeXl()
    backend = XenBackend(xl, hypercalls=NoHypercalls())
    backend.set_vcpu_affinity(3, 0, [2, 1, 2])
    backend.set_vcpu_affinity(3, 1, [])
    backend.set_sched_params(3, 512, 50)
    backend.set_memory_target(3, 131072)
    backend.unpause(3)
    argvs = [c[0] for c in xl.calls]
    assert ["xl", "vcpu-pin", "3", "0", "1,2"] in argvs and ["xl", "vcpu-pin", "3", "1", "all"] in argvs
    assert ["xl", "sched-credit2", "-d", "3", "-w", "512", "-c", "50"] in argvs
    assert ["xl", "mem-set", "3", "131072k"] in argvs and ["xl", "unpause", "3"] in argvs
    with pytest.raises(XeError) as e:  # xl pause exits 0 on a missing domain; libxl's log says why
        backend.pause(9)
    assert e.value.code == "HYPERVISOR_ERROR"


def test_shutdown_uses_remote_shutdown() -> None:
    xl = FakeXl()
    XenBackend(xl).shutdown(5, "crash")
    argv = xl.calls[0][0]
    assert argv[:2] == ["/usr/bin/python3", "-c"] and "domain_shutdown(5, 3)" in argv[2]
    with pytest.raises(XeError):
        XenBackend(xl).shutdown(5, "sideways")


@pytest.fixture
def xenstored() -> Iterator[str]:
    """xetool's own xenstored on a short socket path: what XenBackend reads with pyxs."""
    d = Path(tempfile.mkdtemp(prefix="xs-", dir="/tmp"))
    try:
        with ThreadedServer(d / "xs.sock") as server:
            yield str(server.server.socket_path)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_hotplug_runs_scripts_like_libxl(xenstored: str) -> None:
    xl = FakeXl()
    with XsClient(xenstored) as xs:
        xs.write_many({"/local/domain/0/backend/vif/4/0/state": "2",
                       "/local/domain/0/backend/vif/4/0/script": "vif-bridge"})
    backend = XenBackend(xl, xenstored, hypercalls=NoHypercalls())
    backend.hotplug("vif", 4, 0, "online")
    argv, env = xl.calls[-1]
    assert argv == ["/etc/xen/scripts/vif-bridge", "online", "type_if=vif"]
    assert env is not None and env["XENBUS_PATH"] == "backend/vif/4/0" and env["vif"] == "vif4.0"
    assert env["XENBUS_TYPE"] == "vif" and env["XENBUS_BASE_PATH"] == "backend"
    assert [c[0][0] for c in xl.calls] == ["/etc/xen/scripts/vif-bridge"]  # xenstore through pyxs, no process
    xl.answers[("/etc/xen/scripts/vif-bridge", "offline")] = CmdResult(1, "", "boom")
    with XsClient(xenstored) as xs:
        xs.write("/local/domain/0/backend/vif/4/0/hotplug-error", "no bridge")
    with pytest.raises(XeError) as e:
        backend.hotplug("vif", 4, 0, "offline")
    assert e.value.code == "HOTPLUG_FAILED" and "no bridge" in e.value.params["reason"]
    with XsClient(xenstored) as xs:  # a disk with a script of its own: that script runs
        xs.write("/local/domain/0/backend/vbd/4/51712/script", "block-iscsi")
    backend.hotplug("vbd", 4, 51712, "remove")
    assert xl.calls[-1][0] == ["/etc/xen/scripts/block-iscsi", "remove"]


def _loop_devices_usable() -> bool:
    try:
        os.close(os.open("/dev/loop-control", os.O_RDWR))
        return True
    except OSError:
        return False


@pytest.fixture
def disk_file(tmp_path: Path) -> Iterator[Path]:
    """A disk file; whatever loop device a failed test left on it is released afterwards."""
    from xetool.backends.xen import loop

    disk = tmp_path / "d.raw"
    disk.write_bytes(b"\0" * (1 << 20))
    yield disk
    for dev in loop.users(str(disk)):
        loop.detach(dev)


@pytest.mark.skipif(not _loop_devices_usable(), reason="no /dev/loop-control this user can open (root, loop module)")
def test_a_disk_files_hotplug_is_a_loop_device_made_here(xenstored: str, tmp_path: Path, disk_file: Path) -> None:
    """Xen's block script's work, done in-process: the file gets a loop device (read-only for
    mode r), blkback its major:minor, then hotplug-status; remove releases it; no process runs."""
    from xetool.backends.xen import loop

    disk = disk_file
    be = "/local/domain/0/backend/vbd/4/51712"
    xl = FakeXl()
    backend = XenBackend(xl, xenstored, hypercalls=NoHypercalls())
    for mode, ro in (("w", "0"), ("r", "1")):
        with XsClient(xenstored) as xs:
            xs.write_many({f"{be}/state": "2", f"{be}/params": str(disk), f"{be}/mode": mode,
                           f"{be}/script": "/etc/xen/scripts/block"})
        backend.hotplug("vbd", 4, 51712, "add")
        with XsClient(xenstored) as xs:
            dev = xs.read(f"{be}/physical-device-path")
            assert loop.backing_file(dev) == str(disk)
            rdev = os.stat(dev).st_rdev
            assert xs.read(f"{be}/physical-device") == f"{os.major(rdev):x}:{os.minor(rdev):x}"
            assert xs.read(f"{be}/hotplug-status") == "connected"
            assert Path(f"/sys/block/{dev[5:]}/ro").read_text().strip() == ro
        backend.hotplug("vbd", 4, 51712, "add")  # again: nothing more (the script's early exit)
        backend.hotplug("vbd", 4, 51712, "remove")
        assert loop.backing_file(dev) is None
        with XsClient(xenstored) as xs:
            for key in ("physical-device", "physical-device-path", "node", "hotplug-status"):
                xs.rm(f"{be}/{key}")
    assert xl.calls == []

    # the script's sharing rule: read-only beside read-only, nothing beside read-write
    other = "/local/domain/0/backend/vbd/5/51712"
    for mode, second, refused in (("r", "r", False), ("r", "w", True), ("w", "r", True)):
        with XsClient(xenstored) as xs:
            for path, m in ((be, mode), (other, second)):
                xs.write_many({f"{path}/state": "2", f"{path}/params": str(disk), f"{path}/mode": m})
        backend.hotplug("vbd", 4, 51712, "add")
        if refused:
            with pytest.raises(XeError) as e:
                backend.hotplug("vbd", 5, 51712, "add")
            assert "in use by domain 4's disk 51712" in e.value.params["reason"], e.value.params
        else:
            backend.hotplug("vbd", 5, 51712, "add")
            backend.hotplug("vbd", 5, 51712, "remove")
        backend.hotplug("vbd", 4, 51712, "remove")
        assert loop.users(str(disk)) == []
        with XsClient(xenstored) as xs:
            for path in (be, other):
                for key in ("physical-device", "physical-device-path", "node", "hotplug-status", "hotplug-error"):
                    if xs.read_or(f"{path}/{key}") is not None:
                        xs.rm(f"{path}/{key}")
    disk.chmod(0o444)  # a read-only file is not attached read-write
    with XsClient(xenstored) as xs:
        xs.write_many({f"{be}/state": "2", f"{be}/mode": "w"})
    with pytest.raises(XeError) as e:
        backend.hotplug("vbd", 4, 51712, "add")
    assert "read-only" in e.value.params["reason"] and loop.users(str(disk)) == []
    with XsClient(xenstored) as xs:  # an empty CD drive: nothing to attach
        xs.write_many({f"{be}/params": "", f"{be}/hotplug-status": ""})
    backend.hotplug("vbd", 4, 51712, "add")
    with XsClient(xenstored) as xs:
        assert xs.read(f"{be}/hotplug-status") == "connected" and xs.read_or(f"{be}/physical-device") is None
        xs.write(f"{be}/params", str(tmp_path / "gone.raw"))
    with pytest.raises(XeError) as e:
        backend.hotplug("vbd", 4, 51712, "add")
    assert e.value.code == "HOTPLUG_FAILED" and "gone.raw: No such file" in e.value.params["reason"]
    with XsClient(xenstored) as xs:
        assert xs.read(f"{be}/hotplug-status") == "error" and "gone.raw" in xs.read(f"{be}/hotplug-error")


def test_hotplug_waits_for_initwait(xenstored: str) -> None:
    with XsClient(xenstored) as xs:
        xs.write("/local/domain/0/backend/vbd/4/51712/state", "1")
    with pytest.raises(XeError) as e:
        XenBackend(FakeXl(), xenstored, hypercalls=NoHypercalls()).hotplug("vbd", 4, 51712, "add", wait_s=0.3)
    assert e.value.code == "DEVICE_ATTACH_TIMEOUT" and "backend state 1" in e.value.params["seconds"]


def test_device_model_argv(tmp_path: Path) -> None:
    nics = [(f"00:16:3e:00:00:{i:02x}", "xenbr0") for i in range(10)]
    backend = XenBackend(FakeXl(), config_dir=tmp_path)
    argv = backend.device_model_argv(7, 1, nics, memory_kib=1048576)
    assert argv[0] == "/usr/libexec/xen-qemu-system-i386"
    joined = " ".join(argv)
    assert "-xen-domid 7" in joined and "-machine xenfv" in joined and "-m 1024" in joined
    assert "-vnc 127.0.0.1:1,to=99" in joined and "-usb -device usb-tablet" in joined
    assert joined.count("rtl8139") == 8 and "mac=00:16:3e:00:00:07" in joined and "00:00:08" not in joined
    assert "ifname=vif7.0-emu" in joined
    assert f"socket,id=qmp,path={tmp_path}/qmp-dm-7.sock,server=on,wait=off" in argv
    with pytest.raises(XeError):
        backend.device_model_argv(7, 1, [("nonsense", "xenbr0")], memory_kib=1024)


def test_console_server_argv() -> None:
    argv = XenBackend(FakeXl()).console_server_argv(3)
    assert argv[1:5] == ["-m", "xetool.backends.xen.vncterm", "--domid", "3"]


def test_hvm_console_password_goes_to_libxl_and_to_the_secret_file(tmp_path: Path) -> None:
    """libxl starts an HVM guest's qemu inside `xl create`: its VNC password is in the xl config
    (0600), and the device model's adoption writes that same password to the console's file."""
    from xetool.devices import vncauth

    assert "vncpasswd" not in xl_config(config(hvm=True, kernel="/usr/lib/xen-4.17/boot/hvmloader"))
    assert 'vncpasswd = "s3cret"' in xl_config(config(hvm=True, kernel="/usr/lib/xen-4.17/boot/hvmloader"),
                                                vnc_password="s3cret")
    xl = FakeXl()
    backend = XenBackend(xl, config_dir=tmp_path, hypercalls=NoHypercalls())
    backend.physinfo = lambda: PhysInfo(1 << 20, 1 << 19, 2, frozenset({"hvm", "pv"}))  # type: ignore[method-assign]
    domid = backend.create_domain(config(hvm=True, kernel="/usr/lib/xen-4.17/boot/hvmloader"))
    cfg = tmp_path / f"{UUID}.cfg"
    assert cfg.stat().st_mode & 0o077 == 0
    password = next(line.split('"')[1] for line in cfg.read_text().splitlines() if line.startswith("vncpasswd"))
    assert len(password) == vncauth.PASSWORD_LEN
    backend._adopt_device_model = lambda d, nics: 4242  # type: ignore[method-assign]  # QMP: tests/unit/test_xen_hvm_device_model.py
    secret = tmp_path / "consoles" / "vnc.passwd"
    assert backend.start_service("device-model", domid, [], tmp_path / "dm.log", secret=secret) == 4242
    assert vncauth.read_password(str(secret)) == password
    other = XenBackend(FakeXl(), config_dir=tmp_path, hypercalls=NoHypercalls())
    other._adopt_device_model = lambda d, nics: 4242  # type: ignore[method-assign]
    with pytest.raises(XeError) as e:
        other.start_service("device-model", domid, [], tmp_path / "dm.log", secret=secret)
    assert e.value.code == "FAILED_TO_START_EMULATOR"


def test_find_domain_by_uuid_from_xl_list(tmp_path: Path) -> None:
    """The domain handle, not a stored domid: `xl list -v` rows carry the uuid."""
    xl = FakeXl()
    xl.answers[("xl", "list", "-v")] = CmdResult(0, (DATA / "xl-list-v-running.txt").read_text(), "")
    xl.answers[("xl", "list", "-l")] = CmdResult(0, (DATA / "xl-list-l-running.json").read_text(), "")
    b = XenBackend(xl, config_dir=tmp_path, hypercalls=NoHypercalls())
    running = b.find_domain("a598ed20-34a7-4b4e-9df7-add50770d337")
    assert running is not None and running.domid == 2 and not running.paused
    assert b.find_domain("4d181961-b175-487b-b67b-bef0f77d0ffc").domid == 1  # type: ignore[union-attr]
    assert b.find_domain("00000000-0000-0000-0000-000000000000") is None  # dom0 is never a VM's domain
    assert b.find_domain("11111111-2222-3333-4444-555555555555") is None
    assert set(b.domains_by_uuid()) == {"a598ed20-34a7-4b4e-9df7-add50770d337", "4d181961-b175-487b-b67b-bef0f77d0ffc"}


def test_boot_id_is_dom0s(tmp_path: Path) -> None:
    f = tmp_path / "boot_id"
    f.write_text("6c1f2e0a-27c4-4a53-9a0b-0e3f6f0d7d11\n")
    b = XenBackend(FakeXl(), config_dir=tmp_path, hypercalls=NoHypercalls(), boot_id_file=str(f))
    assert b.boot_id() == "6c1f2e0a-27c4-4a53-9a0b-0e3f6f0d7d11"
    f.unlink()
    with pytest.raises(XeError) as err:
        b.boot_id()
    assert err.value.code == "HOST_OFFLINE" and "boot_id" in err.value.params["reason"]


def test_a_domains_devices_are_hotplugged_at_once(xenstored: str) -> None:
    """As libxl adds them: two disks' block scripts run side by side, not one after the other;
    a script that fails is reported, by device, once both have finished."""
    import threading
    import time

    from xetool.devices import vbd

    with XsClient(xenstored) as xs:
        xs.write("/local/domain/4/vm", "/vm/" + UUID)
    spans: dict[int, tuple[float, float]] = {}
    failing: set[int] = set()

    class Dom0Backends:
        """Each script takes 0.4 s, then reports in hotplug-status as Xen's block script does."""

        def hotplug(self, kind: str, domid: int, devid: int, action: str) -> None:
            began = time.monotonic()
            time.sleep(0.4)
            be = f"/local/domain/0/backend/{kind}/{domid}/{devid}"
            with XsClient(xenstored) as xs:
                if devid in failing:
                    xs.write_many({f"{be}/hotplug-error": "losetup failed", f"{be}/hotplug-status": "error"})
                    spans[devid] = (began, time.monotonic())
                    raise XeError("HOTPLUG_FAILED", kind, f"{domid}/{devid}", "losetup failed")
                xs.write(f"{be}/hotplug-status", "connected")
            spans[devid] = (began, time.monotonic())

    disks = [vbd.Disk(n, Path(f"/srv/d{n}.raw"), "RW", "Disk", n == 0, f"vbd-{n}", True) for n in (0, 1)]
    with XsClient(xenstored) as xs:
        t = time.monotonic()
        assert vbd.plug(xs, Dom0Backends(), 4, False, disks) == ["xvda", "xvdb"]  # type: ignore[arg-type]
        assert time.monotonic() - t < 0.75, spans
        (a0, a1), (b0, b1) = spans.values()
        assert a0 < b1 and b0 < a1  # they overlapped
        failing.add(vbd.devid(1, False))
        spans.clear()
        with pytest.raises(XeError) as e:
            vbd.plug(xs, Dom0Backends(), 4, False, [vbd.Disk(2, None, "RO", "CD", False, "vbd-2", True), disks[1]])  # type: ignore[arg-type]
        assert e.value.code == "HOTPLUG_FAILED" and "losetup failed" in str(e.value.params)
        assert len(spans) == 2  # the other device's script ran to its end
    assert not [t for t in threading.enumerate() if t.name.startswith("hotplug ")]
