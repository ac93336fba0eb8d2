"""SimulatorBackend: xetool.backends.base.Backend over a simulated host process, plus the
operator's helpers (list_hosts, stop_host, xenstore_socket_path)."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import xetool
from xetool import records
from xetool.backends.base import Backend, DomainConfig, DomainInfo, PhysInfo
from xetool.backends.simulator import control
from xetool.backends.simulator.layout import HostFiles, host_files
from xetool.errors import XeError
from xetool.paths import HOSTS
from xetool.processes import alive, read_pid
from xetool.records import record

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from typing import Any

START_TIMEOUT = 10.0  # seconds for a new host process to answer
LOCK_TIMEOUT = 15.0  # seconds to wait for another process that is starting the same host
CALL_TIMEOUT = 10.0  # seconds for one control request
PING_TIMEOUT = 1.0


def _package_root(name: str) -> str:
    """The directory holding an importable package, found without importing it."""
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise XeError("SIMULATOR_FAILED", "", f"the {name} package is not installed")
    return str(Path(spec.origin).resolve().parent.parent)


def _read_pid(files: HostFiles, host_uuid: str) -> int | None:
    """The host process's pid from its pid file, but only if that pid still runs this host's
    hostd: after a crash the number may have been reused by an unrelated process."""
    pid = read_pid(str(files.pid_file))
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return None
    if b"xetool.backends.simulator.hostd" in argv and host_uuid.encode() in argv:
        return pid
    return None


@contextmanager
def _flock(path: Path, timeout: float, host_uuid: str) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise XeError("SIMULATOR_FAILED", host_uuid, f"another process holds {path} (starting the host?)") from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # releases the lock


class SimulatorBackend(Backend):
    """A simulated Xen host, one long-lived process per host uuid under `state_dir`.

    The host parameters are used when this call starts the host process; a host that already
    runs keeps the ones it was started with (physinfo() tells them)."""

    name = "simulator"

    def __init__(self, state_dir: Path, host_uuid: str, *, memory_total_kib: int, dom0_memory_kib: int,
                 cpus: int, capabilities: frozenset[str], hostname: str = "simulated-host",
                 eagain_probability: float = 0.0) -> None:
        self.state_dir = Path(state_dir)
        self.host_uuid = host_uuid
        self.memory_total_kib = memory_total_kib
        self.dom0_memory_kib = dom0_memory_kib
        self.cpus = cpus
        self.capabilities = frozenset(capabilities)
        self.hostname = hostname
        self.eagain_probability = eagain_probability
        self.files = host_files(self.state_dir, host_uuid)

    # --- the host process ------------------------------------------------------------------------

    def xenstore_socket(self) -> str:
        return str(self.files.xenstored_socket)

    def is_live(self) -> bool:
        try:
            control.call(str(self.files.control_socket), "ping", timeout=PING_TIMEOUT)
            return True
        except (control.HostUnreachable, TimeoutError, OSError, ValueError, XeError):
            return False

    def ensure_running(self) -> None:
        """Start the host process if none runs. One that runs but does not answer (stopped,
        wedged) is HOST_OFFLINE: a second process beside it would be a second host."""
        if self.is_live():
            return
        self._assert_not_unresponsive()
        try:
            self.files.dir.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.files.dir.mkdir(exist_ok=True, mode=0o700)  # the host's runtime files: its owner's only
        except OSError as e:
            raise XeError("STATE_DIR_NOT_WRITABLE", self.files.dir, e.strerror) from None
        with _flock(self.files.lock_file, LOCK_TIMEOUT, self.host_uuid):
            if self.is_live():  # someone else started it while we waited for the lock
                return
            self._assert_not_unresponsive()
            self._spawn()

    def _process(self) -> int | None:
        """The pid of this host's process if one is alive (answering or not)."""
        pid = _read_pid(self.files, self.host_uuid)
        return pid if pid is not None and alive(pid) else None

    def _offline(self, reason: str) -> XeError:
        return XeError("HOST_OFFLINE", self.host_uuid, name=self.hostname, reason=reason)

    def _assert_not_unresponsive(self) -> None:
        pid = self._process()
        if pid is not None:
            raise self._offline(f"the simulated host's process {pid} runs but does not answer within "
                                f"{PING_TIMEOUT:g} s (stopped?); `xetool host-sim-stop` then `host-sim-start` restarts it")

    def reachability(self) -> str:
        if self.is_live():
            return "live"
        return "unresponsive" if self._process() is not None else "down"

    def _spawn(self) -> None:
        files = self.files
        # -S: the host needs only the standard library and xetool (on PYTHONPATH below), and
        # site-packages .pth hooks can cost more than the whole start-up budget.
        argv = [sys.executable, "-S", "-m", "xetool.backends.simulator.hostd",
                "--state-dir", str(self.state_dir.absolute()), "--host-uuid", self.host_uuid,
                "--memory-total-kib", str(self.memory_total_kib), "--dom0-memory-kib", str(self.dom0_memory_kib),
                "--cpus", str(self.cpus), "--capabilities", ",".join(sorted(self.capabilities)),
                "--hostname", self.hostname, "--eagain", str(self.eagain_probability)]
        env = dict(os.environ)
        # xetool itself, and pyxs for the console stand-ins the host forks (without site's .pth hooks)
        roots = [str(Path(xetool.__file__).resolve().parent.parent), _package_root("pyxs")]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(roots + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]))
        r, w = os.pipe()
        try:
            with open(files.log_file, "ab") as log:
                proc = subprocess.Popen(argv + ["--ready-fd", str(w)], stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=log, pass_fds=(w,), start_new_session=True, cwd="/", env=env)
            os.close(w)
            w = -1
            proc.wait(START_TIMEOUT)  # the first process forks the daemon and exits at once
            line = b""
            deadline = time.monotonic() + START_TIMEOUT
            while not line.endswith(b"\n"):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([r], [], [], remaining)[0]:
                    raise XeError("SIMULATOR_FAILED", self.host_uuid, f"no answer within {START_TIMEOUT} s; see {files.log_file}")
                chunk = os.read(r, 256)
                if not chunk:
                    break
                line += chunk
        except (OSError, subprocess.TimeoutExpired) as e:
            raise XeError("SIMULATOR_FAILED", self.host_uuid, f"cannot start the host process: {e}") from None
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)
        if not line.startswith(b"ready"):
            reason = line.decode(errors="replace").strip() or f"the host process exited; see {files.log_file}"
            raise XeError("SIMULATOR_FAILED", self.host_uuid, reason)

    def _call(self, op: str, **args: Any) -> Any:
        try:
            return control.call(str(self.files.control_socket), op, args, timeout=CALL_TIMEOUT)
        except control.HostUnreachable:
            raise self._offline("the simulated host's process is not running") from None
        except TimeoutError as e:
            raise self._offline(str(e)) from None
        except (OSError, ValueError) as e:
            raise XeError("SIMULATOR_FAILED", self.host_uuid, f"control request {op} failed: {e}") from None

    # --- the hypervisor ----------------------------------------------------------------------------

    def physinfo(self) -> PhysInfo:
        p = self._call("physinfo")
        return PhysInfo(p["total_memory_kib"], p["free_memory_kib"], p["nr_cpus"], frozenset(p["capabilities"]),
                        p["xen_version"])

    @staticmethod
    def _config(config: DomainConfig) -> dict[str, Any]:
        d = records.asdict(config)
        d["platform"] = dict(config.platform)
        return d

    def create_domain(self, config: DomainConfig) -> int:
        return int(self._call("create", config=self._config(config)))

    def build_domain(self, domid: int, config: DomainConfig) -> None:
        self._call("build", domid=domid, config=self._config(config))

    def set_vcpu_affinity(self, domid: int, vcpu: int, cpus: Sequence[int]) -> None:
        self._call("set_vcpu_affinity", domid=domid, vcpu=vcpu, cpus=list(cpus))

    def set_sched_params(self, domid: int, weight: int, cap: int) -> None:
        self._call("set_sched_params", domid=domid, weight=weight, cap=cap)

    def set_memory_target(self, domid: int, target_kib: int) -> None:
        self._call("set_memory_target", domid=domid, target_kib=target_kib)

    def pause(self, domid: int) -> None:
        self._call("pause", domid=domid)

    def unpause(self, domid: int) -> None:
        self._call("unpause", domid=domid)

    def shutdown(self, domid: int, reason: str) -> None:
        self._call("shutdown", domid=domid, reason=reason)

    def destroy(self, domid: int) -> None:
        self._call("destroy", domid=domid)

    def list_domains(self) -> list[DomainInfo]:
        return [DomainInfo(**d) for d in self._call("list")]

    def find_domain(self, uuid: str) -> DomainInfo | None:
        found = self._call("find", uuid=uuid)
        return DomainInfo(**found) if found else None

    def boot_id(self) -> str:
        return str(self._call("ping")["boot_id"])

    def memory_snapshot(self) -> tuple[int, list[DomainInfo]]:
        """One request, answered on the host's loop between two guest moves: an exact snapshot."""
        snap = self._call("memory")
        return int(snap["free_memory_kib"]), [DomainInfo(**d) for d in snap["domains"]]

    def domain_details(self, domid: int) -> dict[str, Any] | None:
        """Optional (simulator only): every recorded field of a domain (affinity, weight, cap,
        kernel, platform, ...), for tests and operators."""
        return next((d for d in self._call("list", details=True) if d["domid"] == domid), None)

    def ensure_bridge(self, bridge: str) -> None:
        self._call("ensure_bridge", bridge=bridge)

    def bridges(self) -> list[str]:
        """Optional (simulator only): the bridges created with ensure_bridge."""
        return list(self._call("bridges"))

    def hotplug(self, kind: str, domid: int, devid: int, action: str) -> None:
        """A no-op: the simulated dom0 backends run their "hotplug scripts" themselves, when the
        backend directory appears, and report in hotplug-status."""
        if kind not in ("vbd", "vif") or action not in ("add", "remove", "online", "offline"):
            raise XeError("HYPERVISOR_ERROR", f"hotplug {kind} {action}", domid, "unknown device kind or action")

    def device_model_argv(self, domid: int, vnc_display_base: int, nics: Sequence[tuple[str, str]]) -> list[str]:
        argv = [sys.executable, "-m", "xetool.backends.simulator.vnc", "--kind", "qemu", "--domid", str(domid),
                "--xenstore", self.xenstore_socket(), "--display-base", str(vnc_display_base)]
        for mac, bridge in nics:
            argv += ["--nic", f"{mac},{bridge}"]
        return argv

    def start_service(self, kind: str, domid: int, nics: Sequence[tuple[str, str]], log: Path,
                      secret: Path | None = None) -> int:
        """Forked by the host process (fast), rather than a fresh interpreter spawned here."""
        log.parent.mkdir(parents=True, exist_ok=True)
        return int(self._call("start_service", kind=kind, domid=domid, nics=[f"{m},{b}" for m, b in nics],
                              log=str(log.absolute()), secret=str(secret.absolute()) if secret else ""))

    def console_server_argv(self, domid: int) -> list[str]:
        return [sys.executable, "-m", "xetool.backends.simulator.vnc", "--kind", "vncterm", "--domid", str(domid),
                "--xenstore", self.xenstore_socket()]


# --- operators' helpers ----------------------------------------------------------------------------


@record(frozen=True)
class HostStatus:
    uuid: str
    pid: int | None
    live: bool
    xenstore_socket: str
    control_socket: str
    log_file: str


def xenstore_socket_path(state_dir: Path, host_uuid: str) -> str:
    """The simulated host's xenstored socket (for XENSTORED_PATH=... xenstore-ls)."""
    return str(host_files(Path(state_dir), host_uuid).xenstored_socket)


def list_hosts(state_dir: Path) -> list[HostStatus]:
    """Every simulated host known under state_dir (started at least once), live or not."""
    root = Path(state_dir) / HOSTS
    out = []
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        if not (d / "hostd.lock").exists() and not (d / "hostd.log").exists():
            continue
        files = host_files(Path(state_dir), d.name)
        try:
            control.call(str(files.control_socket), "ping", timeout=PING_TIMEOUT)
            live = True
        except (control.HostUnreachable, TimeoutError, OSError, ValueError, XeError):
            live = False
        pid = _read_pid(files, d.name)
        out.append(HostStatus(d.name, pid if pid is not None and alive(pid) else None, live,
                              str(files.xenstored_socket), str(files.control_socket), str(files.log_file)))
    return out


def stop_host(state_dir: Path, host_uuid: str, timeout: float = 5.0) -> bool:
    """Stop a simulated host (its domains are gone). True if one was running.
    Asks politely over the control socket, then SIGTERM, then SIGKILL."""
    files = host_files(Path(state_dir), host_uuid)
    pid = _read_pid(files, host_uuid)
    was_running = False
    try:
        control.call(str(files.control_socket), "stop", timeout=PING_TIMEOUT)
        was_running = True
    except (control.HostUnreachable, TimeoutError, OSError, ValueError, XeError):
        pass
    if pid is None or not alive(pid):
        return was_running
    deadline = time.monotonic() + timeout
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return True
        step_deadline = min(deadline, time.monotonic() + timeout / 2)
        while time.monotonic() < step_deadline:
            if not alive(pid):
                return True
            time.sleep(0.01)
    return True
