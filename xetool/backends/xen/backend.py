"""The real Xen backend: a dom0 driven through Debian's `xl` (libxl/libxenguest) and scripts.

Division of work on a real host (DESIGN.md, "Two backends, one code path"):

- ``create_domain`` writes an xl configuration generated from ``DomainConfig`` (no devices) and
  runs ``xl create -p -e``: libxl makes *and builds* the domain, writes the standard xenstore
  tree (``~/memory``, ``~/store``, ``~/console``, ``~/cpu/N/availability``, ``/vm/<uuid>``),
  introduces it to xenstored, attaches console 0 to xenconsoled, and leaves it paused.
  ``-e`` means no ``xl`` monitor process stays behind: xl returns once the domain is built, and
  nothing but the toolstack reacts to the domain's death. ``on_poweroff/on_reboot/on_crash`` are
  "preserve" so that no libxl code path destroys a domain the toolstack has not reaped.
- ``build_domain`` therefore builds nothing: xl has no separate build step. It checks that the
  domain is what was asked (present, paused, not shut down, the uuid and the vCPU count) and
  raises HYPERVISOR_ERROR otherwise.
- Devices are the toolstack's: it writes their xenstore entries and calls ``hotplug``, which
  runs /etc/xen/scripts/vif-bridge with the environment libxl uses (libxl_linux.c), and does
  the block script's work itself (a loop device for a disk file, ``physical-device``; block.py).
  Debian's Xen 4.17 installs no udev rules for xen-backend devices, so no one else runs them.

Every command runs with a timeout; failures raise XeError, never a bare exception.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from xetool.backends.base import Backend, DomainConfig, DomainInfo, PhysInfo
from xetool.backends.xen import parsers, qmp
from xetool.backends.xen.hypercalls import Hypercalls
from xetool.backends.xen.xlconfig import DEBIAN_QEMU_XEN, xl_config
from xetool.errors import XeError
from xetool.records import record, replace
from xetool.xenstore.client import XsClient

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence


@record(frozen=True)
class CmdResult:
    returncode: int
    stdout: str
    stderr: str


# run_cmd(argv, timeout_s, env) -> CmdResult; env entries are added to the process environment
if TYPE_CHECKING:
    RunCmd = Callable[[Sequence[str], float, "Mapping[str, str] | None"], CmdResult]

XEN_TOOLS_PYTHON = "/usr/lib/xen-4.17/lib/python"  # xen.lowlevel.xc, shipped in xen-utils-4.17
HOTPLUG_SCRIPTS = "/etc/xen/scripts"
MAX_EMULATED_NICS = 8


def run_subprocess(argv: Sequence[str], timeout: float, env: Mapping[str, str] | None = None) -> CmdResult:
    """The default runner: a child process with a deadline and captured text output."""
    full_env = dict(os.environ, **env) if env else None
    try:
        proc = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, env=full_env,
            stdin=subprocess.DEVNULL, errors="replace",
        )
    except subprocess.TimeoutExpired:
        return CmdResult(124, "", f"timed out after {timeout:g}s")
    except OSError as e:
        return CmdResult(127, "", f"cannot run {argv[0]}: {e.strerror}")
    return CmdResult(proc.returncode, proc.stdout, proc.stderr)


def _last_error(stderr: str) -> str:
    """The useful part of xl's stderr: the last non-empty lines, without "Parsing config"."""
    lines = [l.strip() for l in stderr.splitlines() if l.strip() and not l.startswith("Parsing config")]
    return " | ".join(lines[-3:]) or "no message"


def _live_domain(domains: Iterable[DomainInfo], uuid: str) -> DomainInfo | None:
    """The VM's domain among these: its handle, not dom0, not dying."""
    return next((d for d in domains if d.uuid == uuid and d.domid != 0 and not d.dying), None)


def _bridge_up(bridge: str) -> bool:
    """A bridge of that name exists and is administratively up (IFF_UP in its flags)."""
    try:
        flags = int(Path(f"/sys/class/net/{bridge}/flags").read_text(), 16)
    except (OSError, ValueError):
        return False
    return Path(f"/sys/class/net/{bridge}/bridge").is_dir() and bool(flags & 0x1)


class XenBackend(Backend):
    """A real Xen 4.17 dom0, driven through `xl`, Xen's hotplug scripts and iproute2."""

    name = "xen"
    # `xl create` makes and builds the domain in one go: the host half must choose the kernel
    # (create_kernel's work) before create_domain, not after
    kernel_at_create = True

    def __init__(
        self,
        run_cmd: RunCmd = run_subprocess,
        xenstore_socket: str = "/run/xenstored/socket",
        *,
        config_dir: str | os.PathLike[str] = "/run/xetool/xen",
        xl: str = "xl",
        timeout: float = 120.0,
        qemu: str = DEBIAN_QEMU_XEN,
        capabilities_file: str = "/proc/xen/capabilities",
        hypercalls: Hypercalls | None = None,
        libxl_run_dir: str = "/var/run/xen",
        console_font: str | None = None,
        boot_id_file: str = "/proc/sys/kernel/random/boot_id",
    ) -> None:
        self._run = run_cmd
        self._socket = xenstore_socket
        self._config_dir = Path(config_dir)
        self._xl = xl
        self._timeout = timeout  # per command; the lab's `xl create` takes 6 s idle, 20+ s loaded
        self._qemu = qemu
        self._caps_file = capabilities_file
        self._scheduler: str | None = None
        # in-process answers where libxl adds nothing (see hypercalls.py); xl when unavailable
        self._hc = hypercalls if hypercalls is not None else Hypercalls()
        self._libxl_run_dir = libxl_run_dir
        self._console_font = console_font  # vncterm's PSF font; None: the first console font found
        self._vnc_passwords: dict[int, str] = {}  # HVM domains this process created: libxl's qemu's
        self._boot_id_file = boot_id_file

    # --- plumbing -----------------------------------------------------------------------------

    def _cmd(self, operation: str, domid: object, argv: Sequence[str], timeout: float | None = None,
             env: Mapping[str, str] | None = None) -> str:
        res = self._run(argv, timeout or self._timeout, env)
        # some xl commands (pause, unpause) exit 0 whatever libxl says: read its log too
        if res.returncode != 0 or "libxl: error" in res.stderr:
            raise XeError("HYPERVISOR_ERROR", operation, domid, f"{' '.join(argv[:3])}: {_last_error(res.stderr)}")
        return res.stdout

    def _xl_cmd(self, operation: str, domid: object, *args: str, timeout: float | None = None) -> str:
        return self._cmd(operation, domid, [self._xl, *args], timeout)

    # --- host ---------------------------------------------------------------------------------

    def xenstore_socket(self) -> str:
        return self._socket

    def is_live(self) -> bool:
        """dom0 of a running Xen (control_d) whose xenstored accepts a connection."""
        try:
            if "control_d" not in Path(self._caps_file).read_text():
                return False
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(1.0)
                s.connect(self._socket)
            return True
        except OSError:
            return False

    def ensure_running(self) -> None:
        # a real hypervisor cannot be started from here: say why it is unreachable
        if not self.is_live():
            raise XeError("HOST_OFFLINE", f"{socket.gethostname()} (no Xen dom0 with xenstored at {self._socket})")

    def boot_id(self) -> str:
        """dom0's boot id: Xen and dom0 boot together, so a new one means the host restarted."""
        try:
            return Path(self._boot_id_file).read_text().strip()
        except OSError as e:
            raise XeError("HOST_OFFLINE", socket.gethostname(), reason=f"cannot read {self._boot_id_file}: {e.strerror}") from None

    def physinfo(self) -> PhysInfo:
        # the hypercall `xl info` makes (XEN_SYSCTL_physinfo), without an xl process
        return self._hc.physinfo() or parsers.physinfo_from_xl_info(self._xl_cmd("physinfo", "", "info"))

    def scheduler(self) -> str:
        """Xen's scheduler (`xl info` xen_scheduler): credit2 by default on 4.17, or credit."""
        if self._scheduler is None:
            info = parsers.parse_xl_info(self._xl_cmd("physinfo", "", "info"))
            self._scheduler = info.get("xen_scheduler", "")
        return self._scheduler

    # --- domains ------------------------------------------------------------------------------

    def create_domain(self, config: DomainConfig) -> int:
        has_hvm = "hvm" in self.physinfo().capabilities if config.hvm else True
        # libxl starts an HVM guest's qemu inside `xl create`, so its console password is chosen
        # here; start_service hands it to the console's password file
        password = ""
        if config.hvm:
            from xetool.devices import vncauth

            password = vncauth.new_password()
        text = xl_config(config, has_hvm, password)
        try:
            self._config_dir.mkdir(parents=True, exist_ok=True)
            path = self._config_dir / f"{config.uuid}.cfg"
            from xetool.paths import write_atomic

            write_atomic(str(path), text, 0o600)  # it may hold the console password
        except OSError as e:
            raise XeError("HYPERVISOR_ERROR", "create_domain", "", f"cannot write the xl config: {e}") from None
        # -p: leave it paused; -e: no monitor process (the toolstack owns the domain's death)
        self._xl_cmd("create_domain", "", "create", "-p", "-e", str(path))
        # the domain just made, by its handle; without the binding, by its name (one xl process)
        found = self._hc.domains()
        made = _live_domain(found, config.uuid) if found is not False else None
        domid = made.domid if made is not None else self._domid_by_name(config.name)
        if password:
            self._vnc_passwords[domid] = password
        return domid

    def _domid_by_name(self, name: str) -> int:
        res = self._run([self._xl, "domid", name], self._timeout, None)
        if res.returncode != 0:
            self._run([self._xl, "destroy", name], self._timeout, None)
            raise XeError("HYPERVISOR_ERROR", "create_domain", "", f"xl created {name} but has no domid for it")
        return parsers.parse_domid(res.stdout, name)

    def find_domain(self, uuid: str) -> DomainInfo | None:
        """By the domain handle: one hypercall where the bindings exist (none found is an
        answer too), else `xl list -v`, whose rows carry the uuid."""
        found = self._hc.domains()
        if found is False:
            found = parsers.parse_xl_list(self._xl_cmd("find_domain", "", "list", "-v"))
        return _live_domain(found, uuid)

    def build_domain(self, domid: int, config: DomainConfig) -> None:
        # `xl create -p` made and built the domain; check that it is the one asked for
        # (the run state only: one `xl list -v D`, the type is the config's)
        dom = self._domain_state(domid)
        if dom is None:
            raise XeError("HYPERVISOR_ERROR", "build_domain", domid, "no such domain")
        problems = []
        if dom.uuid and dom.uuid != config.uuid:
            problems.append(f"uuid {dom.uuid}, expected {config.uuid}")
        if not dom.paused:
            problems.append("not paused")
        if dom.shutdown_reason or dom.dying:
            problems.append(f"shut down ({dom.shutdown_reason or 'dying'})")
        if dom.vcpus != config.vcpus_at_startup:
            problems.append(f"{dom.vcpus} vCPUs online, expected {config.vcpus_at_startup}")
        if problems:
            raise XeError("HYPERVISOR_ERROR", "build_domain", domid, "; ".join(problems))

    def set_vcpu_affinity(self, domid: int, vcpu: int, cpus: Sequence[int]) -> None:
        hard = ",".join(str(c) for c in sorted(set(cpus))) if cpus else "all"
        self._xl_cmd("set_vcpu_affinity", domid, "vcpu-pin", str(domid), str(vcpu), hard)

    def set_sched_params(self, domid: int, weight: int, cap: int) -> None:
        sched = self.scheduler()
        if sched not in ("credit", "credit2"):
            raise XeError("HYPERVISOR_ERROR", "set_sched_params", domid, f"scheduler {sched!r} has no weight and cap")
        self._xl_cmd("set_sched_params", domid, f"sched-{sched}", "-d", str(domid), "-w", str(weight), "-c", str(cap))

    def sched_params(self, domid: int) -> parsers.SchedParams:
        """Weight and cap as Xen has them (optional method, for checks and reconciliation)."""
        out = self._xl_cmd("sched_params", domid, f"sched-{self.scheduler()}", "-d", str(domid))
        return parsers.parse_sched_params(out)[0]

    def vcpu_list(self, domid: int) -> list[parsers.VcpuInfo]:
        """`xl vcpu-list D` (optional method): where each vCPU runs and its affinities."""
        return parsers.parse_vcpu_list(self._xl_cmd("vcpu_list", domid, "vcpu-list", str(domid)))

    def set_memory_target(self, domid: int, target_kib: int) -> None:
        self._xl_cmd("set_memory_target", domid, "mem-set", str(domid), f"{target_kib}k")

    def pause(self, domid: int) -> None:
        if not self._pv_set_paused(domid, True):
            self._xl_cmd("pause", domid, "pause", str(domid))

    def unpause(self, domid: int) -> None:
        if not self._pv_set_paused(domid, False):
            self._xl_cmd("unpause", domid, "unpause", str(domid))

    def _pv_set_paused(self, domid: int, paused: bool) -> bool:
        """libxl pauses a PV domain with this one hypercall; an HVM domain's qemu must be told
        too (QMP stop/cont), so HVM, or any doubt, goes through xl."""
        info = self._hc.domain(domid)
        if not isinstance(info, DomainInfo) or info.hvm:
            return False
        return self._hc.set_paused(domid, paused)

    def shutdown(self, domid: int, reason: str) -> None:
        # `xl shutdown` asks the guest through control/shutdown; the hypervisor-level call
        # (SCHEDOP_remote_shutdown) is xc_domain_shutdown, reached through Xen's own Python module
        code = parsers.SHUTDOWN_CODES.get(reason)
        if code is None:
            raise XeError("INVALID_VALUE", "shutdown-reason", reason)
        script = (
            f"import sys; sys.path.insert(0, {XEN_TOOLS_PYTHON!r}); "
            f"from xen.lowlevel import xc; xc.xc().domain_shutdown({int(domid)}, {code})"
        )
        self._cmd("shutdown", domid, ["/usr/bin/python3", "-c", script])

    def destroy(self, domid: int, wait_s: float = 30.0) -> None:
        res = self._run([self._xl, "destroy", str(domid)], self._timeout, None)
        if res.returncode != 0 and self._domain_state(domid) is not None:
            raise XeError("HYPERVISOR_ERROR", "destroy", domid, _last_error(res.stderr))
        # a dying domain keeps its memory until its last page is released: wait for that
        deadline = time.monotonic() + wait_s
        while self._domain_state(domid) is not None:
            if time.monotonic() > deadline:
                raise XeError("HYPERVISOR_ERROR", "destroy", domid, f"still listed {wait_s:g}s after xl destroy")
            time.sleep(0.2)

    def list_domains(self) -> list[DomainInfo]:
        found = self._hc.domains()  # a resync's first question: one hypercall, not two xl processes
        if found is not False:
            with XsClient(self._socket) as xs:
                return [replace(d, name=xs.read_or(f"/local/domain/{d.domid}/name") or "") for d in found]
        text = self._xl_cmd("list_domains", "", "list", "-v")
        res = self._run([self._xl, "list", "-l"], self._timeout, None)
        # the JSON gives the type (hvm); without it, the text's domains are all reported as PV
        configs = parsers.parse_xl_list_json(res.stdout) if res.returncode == 0 else None
        return parsers.domains_from_xl_list(text, configs)

    def domain_info(self, domid: int) -> DomainInfo | None:
        text = self._list_one(domid)
        if text is None:
            return None
        js = self._run([self._xl, "list", "-l", str(domid)], self._timeout, None)
        # gone meanwhile, or no saved config: the type stays PV
        configs = parsers.parse_xl_list_json(js.stdout) if js.returncode == 0 and js.stdout.strip() else None
        found = [d for d in parsers.domains_from_xl_list(text, configs) if d.domid == domid]
        return found[0] if found else None

    def _domain_state(self, domid: int) -> DomainInfo | None:
        """One domain's run state and uuid: one hypercall, or `xl list -v D` (hvm then False)."""
        info = self._hc.domain(domid)
        if info is not False:
            return info
        text = self._list_one(domid)
        found = [d for d in parsers.parse_xl_list(text) if d.domid == domid] if text else []
        return found[0] if found else None

    def _list_one(self, domid: int) -> str | None:
        """`xl list -v D`, or None when there is no such domain."""
        res = self._run([self._xl, "list", "-v", str(domid)], self._timeout, None)
        if res.returncode == 0:
            return res.stdout
        # "Error: Domain 'N' does not exist." - confirmed against the full list, not the wording
        listed = parsers.parse_xl_list(self._xl_cmd("domain_info", domid, "list"))
        if all(d.domid != domid for d in listed):
            return None
        raise XeError("HYPERVISOR_ERROR", "domain_info", domid, _last_error(res.stderr))

    # --- dom0 networking and devices ----------------------------------------------------------

    def ensure_bridge(self, bridge: str) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", bridge):
            raise XeError("NETWORK_BRIDGE_FAILED", bridge=bridge, reason="not a valid interface name")
        if _bridge_up(bridge):
            return  # already there and up: no ip(8) process at all
        if self._run(["ip", "link", "show", "dev", bridge], 10, None).returncode != 0:
            res = self._run(["ip", "link", "add", "name", bridge, "type", "bridge"], 10, None)
            # another process may have made it meanwhile: only a failure that left no bridge counts
            if res.returncode != 0 and not Path(f"/sys/class/net/{bridge}/bridge").exists():
                raise XeError("NETWORK_BRIDGE_FAILED", bridge=bridge, reason=_last_error(res.stderr))
        elif not Path(f"/sys/class/net/{bridge}/bridge").exists():
            raise XeError("NETWORK_BRIDGE_FAILED", bridge=bridge, reason="an interface of that name is not a bridge")
        res = self._run(["ip", "link", "set", "dev", bridge, "up"], 10, None)
        if res.returncode != 0:
            raise XeError("NETWORK_BRIDGE_FAILED", bridge=bridge, reason=_last_error(res.stderr))

    def hotplug(self, kind: str, domid: int, devid: int, action: str, wait_s: float = 10.0) -> None:
        """Run the device's hotplug script as libxl does (libxl_linux.c), after the kernel
        backend reached InitWait (2) as libxl waits for it. The script named in the backend's
        ``script`` key (default block / vif-bridge) reports ``hotplug-status`` in xenstore.
        A disk with Xen's own block script has its work done in this process instead (block.py)."""
        adding = {"add": True, "online": True, "remove": False, "offline": False}.get(action)
        if kind not in ("vbd", "vif") or adding is None:
            raise XeError("INVALID_VALUE", "hotplug", f"{kind} {action}")
        be = f"/local/domain/0/backend/{kind}/{domid}/{devid}"
        script = self._xs_read(be + "/script") or f"{HOTPLUG_SCRIPTS}/{'block' if kind == 'vbd' else 'vif-bridge'}"
        if not script.startswith("/"):
            script = f"{HOTPLUG_SCRIPTS}/{script}"
        if adding:
            self._wait_backend_state(kind, be, domid, devid, wait_s)
        if kind == "vbd" and script == f"{HOTPLUG_SCRIPTS}/block":
            from xetool.backends.xen import block

            block.hotplug(self._socket, be, f"{domid}/{devid}", adding)
            return
        env = {
            "script": script,
            "XENBUS_TYPE": kind,
            "XENBUS_PATH": f"backend/{kind}/{domid}/{devid}",
            "XENBUS_BASE_PATH": "backend",
        }
        runs: list[tuple[list[str], dict[str, str]]] = []
        if kind == "vbd":
            runs.append(([script, "add" if adding else "remove"], env))
        else:
            vif = f"vif{domid}.{devid}"
            env |= {"netdev": "", "vif": vif}
            runs.append(([script, "online" if adding else "offline", "type_if=vif"], env))
            tap = f"{vif}-emu"  # an HVM guest's emulated NIC (device_model_argv) is bridged too
            if Path(f"/sys/class/net/{tap}").exists():
                runs.append(([script, "add" if adding else "remove", "type_if=tap"], env | {"INTERFACE": tap}))
        for argv, run_env in runs:
            res = self._run(argv, 40.0, run_env)  # LIBXL_HOTPLUG_TIMEOUT
            if res.returncode != 0:
                why = self._xs_read(be + "/hotplug-error") or _last_error(res.stderr)
                raise XeError("HOTPLUG_FAILED", kind, f"{domid}/{devid}", f"{' '.join(argv)}: {why}")

    def _xs_read(self, path: str) -> str | None:
        with XsClient(self._socket) as xs:
            return xs.read_or(path)

    def _wait_backend_state(self, kind: str, be: str, domid: int, devid: int, wait_s: float) -> None:
        """Until the kernel backend reaches InitWait (2) or beyond, as libxl waits for it."""
        with XsClient(self._socket) as xs:
            try:
                xs.wait_until(be + "/state", lambda v: v is not None and v.isdigit() and int(v) >= 2, wait_s)
            except XeError as err:
                if err.code != "EVENT_WAIT_TIMEOUT":
                    raise
                state = xs.read_or(be + "/state")
                raise XeError("DEVICE_ATTACH_TIMEOUT", kind, f"{domid}/{devid}", f"{wait_s:g} (backend state {state})") from None

    # --- processes ----------------------------------------------------------------------------

    def device_model_argv(self, domid: int, vnc_display_base: int, nics: Sequence[tuple[str, str]],
                          memory_kib: int | None = None) -> list[str]:
        """Debian's qemu-system-xen for an HVM domain. ``memory_kib`` (optional, added here) is
        the guest RAM qemu maps; by default ``~/memory/static-max`` from xenstore. NIC taps are
        named as libxl names them (vif<D>.<N>-emu), and ``hotplug("vif", D, N, "online")`` puts
        them on the bridge through vif-bridge (type_if=tap), as libxl does. qemu-xen does not
        write the VNC port to xenstore itself: libxl asks it over QMP (query-vnc), and so must the
        caller, through the QMP socket given here: ``qmp.vnc_port_from_qmp(backend.qmp_socket(D), D)``.
        (vm-start does not use it on Xen: libxl starts qemu itself, see ``start_service``.)"""
        if memory_kib is None:
            value = self._xs_read(f"/local/domain/{domid}/memory/static-max")
            if value is None or not value.isdigit():
                raise XeError("FAILED_TO_START_EMULATOR", domid, "qemu", "no memory/static-max in xenstore")
            memory_kib = int(value)
        try:
            self._config_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise XeError("FAILED_TO_START_EMULATOR", domid, "qemu", f"cannot make {self._config_dir}: {e}") from None
        argv = [
            self._qemu, "-xen-domid", str(domid), "-no-shutdown", "-nodefaults", "-no-user-config",
            "-name", f"xetool-dm-{domid}",
            "-chardev", f"socket,id=qmp,path={self.qmp_socket(domid)},server=on,wait=off",
            "-mon", "chardev=qmp,mode=control",
            "-machine", "xenfv,suppress-vmdesc=on", "-m", str(memory_kib // 1024),
            "-display", "none", "-vnc", f"127.0.0.1:{vnc_display_base},to=99",
            "-device", "cirrus-vga", "-boot", "order=cd",
            "-usb", "-device", "usb-tablet",
        ]
        for n, (mac, _bridge) in enumerate(nics[:MAX_EMULATED_NICS]):
            if not re.fullmatch(r"(?:[0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}", mac):
                raise XeError("INVALID_VALUE", "MAC", mac)
            argv += [
                "-device", f"rtl8139,id=nic{n},netdev=net{n},mac={mac}",
                "-netdev", f"type=tap,id=net{n},ifname=vif{domid}.{n}-emu,script=no,downscript=no",
            ]
        return argv

    def start_service(self, kind: str, domid: int, nics: Sequence[tuple[str, str]], log: Path,
                      secret: Path | None = None) -> int:
        """The PV console server (xetool's vncterm) is started here, detached. The HVM device
        model is not: libxl started qemu-xen inside `xl create` (xl_config asks for it), and a
        second qemu on the same domain would fight the first."""
        if kind == "device-model":
            pid = self._adopt_device_model(domid, nics)
            if secret is not None:
                password = self._vnc_passwords.get(domid)
                if password is None:
                    raise XeError("FAILED_TO_START_EMULATOR", domid, "qemu", "this process did not create the "
                                  "domain, so it does not know the password libxl gave its VNC console")
                from xetool.devices import vncauth

                vncauth.write_password(str(secret), password)
            return pid
        if kind != "console":
            raise XeError("INVALID_VALUE", "service", kind)
        return self._fork_console_server(domid, log, secret)

    def _fork_console_server(self, domid: int, log: Path, secret: Path | None = None) -> int:
        """vncterm in a forked child of this process rather than a new interpreter: a Python
        start-up and its imports cost seconds under the lab's emulation, and the host half waits
        for the port. The child is detached (its own session, stdin /dev/null, stdout and stderr
        to `log`, no descriptor of ours: the store, lock files, xenstore connections) and ends on
        SIGTERM, which is how teardown stops it (console.stop)."""
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as e:
            raise XeError("FAILED_TO_START_EMULATOR", domid, "vncterm", f"{log}: {e.strerror}") from None
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid:
            os.close(out)
            return pid
        code = 1
        try:  # the child: never returns into the caller's code
            import gc
            import signal

            gc.freeze()  # the parent's objects are never collected here, so never closed twice
            os.setsid()
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.closerange(3, 65536)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
                signal.signal(sig, signal.SIG_DFL)
            sys.stdin = open(0, closefd=False)
            sys.stdout = sys.stderr = open(2, "w", buffering=1, closefd=False)
            from xetool.backends.xen import vncterm

            font = ["--font", self._console_font] if self._console_font else []
            password = ["--password-file", str(secret)] if secret else []
            code = vncterm.main(["--domid", str(domid), "--xenstore-socket", self._socket, *font, *password])
        except SystemExit as e:  # vncterm's own "no console/tty", "no free port", ...
            if isinstance(e.code, str):
                print(e.code, file=sys.stderr)
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)

    def _adopt_device_model(self, domid: int, nics: Sequence[tuple[str, str]]) -> int:
        """Give libxl's qemu the seed's NICs (RTL8139 on taps vif<D>.<N>-emu, bridged) over QMP,
        ask it for its VNC port, write that to console/vnc-port; return its pid."""
        home = f"/local/domain/{domid}"
        pid = self._xs_read(f"{home}/image/device-model-pid")
        if not pid or not pid.isdigit():
            raise XeError("FAILED_TO_START_EMULATOR", domid, "qemu", "libxl started no device model (no image/device-model-pid)")
        for mac, _bridge in nics:
            if not re.fullmatch(r"(?:[0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}", mac):
                raise XeError("INVALID_VALUE", "MAC", mac)
        path = self.libxl_qmp_socket(domid)
        taps: list[tuple[str, str]] = []
        try:
            with qmp.session(path, 10.0) as q:
                for n, (mac, bridge) in enumerate(nics[:MAX_EMULATED_NICS]):
                    tap = f"vif{domid}.{n}-emu"  # libxl's name; hotplug() finds it by that name
                    qmp.add_nic(q, n, mac, tap)
                    taps.append((tap, bridge))
                port = qmp.vnc_port(q)
        except (OSError, ValueError) as e:
            raise XeError("FAILED_TO_START_EMULATOR", domid, "qemu", f"QMP {path}: {e}") from None
        for tap, bridge in taps:
            self.ensure_bridge(bridge)
            res = self._run(["ip", "link", "set", "dev", tap, "master", bridge, "up"], 10, None)
            if res.returncode != 0:
                raise XeError("FAILED_TO_START_EMULATOR", domid, "qemu", f"{tap} on {bridge}: {_last_error(res.stderr)}")
        with XsClient(self._socket) as xs:  # what libxl's own post-config writes, and vncviewer reads
            xs.write_many({f"{home}/console/vnc-listen": "127.0.0.1", f"{home}/console/vnc-port": str(port)})
        return int(pid)

    def libxl_qmp_socket(self, domid: int) -> str:
        """The QMP socket of the device model libxl started (libxl_qmp.c: qmp-libxl-<domid>)."""
        return f"{self._libxl_run_dir}/qmp-libxl-{domid}"

    def qmp_socket(self, domid: int) -> str:
        """The device model's QMP socket (optional method): ask it for the VNC port."""
        return str(self._config_dir / f"qmp-dm-{domid}.sock")

    def console_server_argv(self, domid: int) -> list[str]:
        """xetool's own PV console server (Debian has no vncterm): a Python process that
        exports the guest's console pty (``~/console/tty``, from xenconsoled) over RFB on
        127.0.0.1 and writes ``~/console/vnc-port``."""
        return [sys.executable, "-m", "xetool.backends.xen.vncterm", "--domid", str(domid),
                "--xenstore-socket", self._socket]
