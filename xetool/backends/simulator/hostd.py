"""The simulated host process: `python -m xetool.backends.simulator.hostd --state-dir D --host-uuid U ...`.

One per simulated host. It detaches like ssh-agent (forks, the parent exits at once, the child
has its own session, no terminal, logs to hostd.log), then serves on one thread:
the xenstored socket, the control socket, the hypervisor, dom0's backends and xenconsoled, and
the guests. When it is ready it writes "ready <pid>" to --ready-fd. SIGTERM (or the control
op "stop") stops it cleanly; SIGKILL is a host crash, and its domains are simply gone.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import uuid as uuidlib
from pathlib import Path

from xetool.backends.simulator.backends import Dom0Backends, Xenconsoled
from xetool.backends.simulator.control import ControlServer
from xetool.paths import make_private_dirs
from xetool.backends.simulator.hypervisor import Hypervisor
from xetool.backends.simulator.layout import host_files
from xetool.xenstore.server import Loop, XenstoreServer
from xetool.xenstore.tree import Tree

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from typing import Any

log = logging.getLogger("xetool.simulator")

WATCHDOG_INTERVAL = 2.0  # seconds between checks that this host's files are still ours


class Host:
    def __init__(self, args: argparse.Namespace) -> None:
        self.files = host_files(args.state_dir, args.host_uuid)
        make_private_dirs(self.files.xenstored_socket.parent)
        self.host_uuid = args.host_uuid
        # this process is one boot of the host: a new id each start (Linux's random/boot_id)
        self.boot_id = str(uuidlib.uuid4())
        self.loop = Loop()
        self.tree = Tree(eagain_probability=args.eagain)
        self.xenstored = XenstoreServer(self.tree, self.loop, self.files.xenstored_socket)
        os.chmod(self.files.xenstored_socket, 0o600)  # as xenstored's own socket: its owner only
        self.hv = Hypervisor(self.tree, self.loop, memory_total_kib=args.memory_total_kib,
                             dom0_memory_kib=args.dom0_memory_kib, cpus=args.cpus,
                             capabilities=frozenset(c for c in args.capabilities.split(",") if c),
                             hostname=args.hostname)
        self.backends = Dom0Backends(self.hv)
        self.consoled = Xenconsoled(self.hv)
        try:
            os.unlink(self.files.control_socket)
        except FileNotFoundError:
            pass
        owner = os.stat(args.state_dir).st_uid  # the state directory's owner (and root) may control it
        self.control = ControlServer(self.loop, str(self.files.control_socket), self.dispatch, frozenset({owner}))

    def dispatch(self, op: str, a: dict[str, Any]) -> Any:
        hv = self.hv
        if op == "ping":
            return {"pid": os.getpid(), "host_uuid": self.host_uuid, "xenstored": str(self.files.xenstored_socket),
                    "boot_id": self.boot_id}
        if op == "physinfo":
            return hv.physinfo()
        if op == "memory":  # the memory broker's snapshot: free memory and domains at one instant
            return {"free_memory_kib": hv.free_memory_kib(), "domains": hv.list()}
        if op == "create":
            return hv.create(a["config"])
        if op == "build":
            return hv.build(int(a["domid"]), a["config"])
        if op == "set_vcpu_affinity":
            return hv.set_vcpu_affinity(int(a["domid"]), int(a["vcpu"]), [int(c) for c in a["cpus"]])
        if op == "set_sched_params":
            return hv.set_sched_params(int(a["domid"]), int(a["weight"]), int(a["cap"]))
        if op == "set_memory_target":
            return hv.set_memory_target(int(a["domid"]), int(a["target_kib"]))
        if op in ("pause", "unpause", "destroy"):
            return getattr(hv, op)(int(a["domid"]))
        if op == "shutdown":
            return hv.shutdown(int(a["domid"]), str(a["reason"]))
        if op == "list":
            return hv.list(details=bool(a.get("details")))
        if op == "find":
            return hv.find(str(a["uuid"]))
        if op == "ensure_bridge":
            return hv.ensure_bridge(str(a["bridge"]))
        if op == "bridges":
            return sorted(hv.bridges)
        if op == "start_service":
            return self.start_service(str(a["kind"]), int(a["domid"]), [str(n) for n in a.get("nics", [])], str(a["log"]),
                                      str(a.get("secret") or ""))
        if op == "eagain":
            self.tree.eagain_probability = float(a["probability"])
            return None
        if op == "stop":
            self.loop.call_soon(self.loop.stop)
            return None
        raise KeyError(f"unknown control op {op!r}")

    def start_service(self, kind: str, domid: int, nics: list[str], log_path: str, secret: str = "") -> int:
        """The domain's device model or console stand-in, forked from this already-loaded
        process (a fresh interpreter costs ten times as long), in its own session, logging to
        `log_path`. It talks to our xenstored over the socket like any other client."""
        self.hv._domain("start_service", domid)  # the domain must exist
        argv = ["--kind", "qemu" if kind == "device-model" else "vncterm", "--domid", str(domid),
                "--xenstore", str(self.files.xenstored_socket)]
        for nic in nics:
            argv += ["--nic", nic]
        if secret:
            argv += ["--password-file", secret]
        # Loaded here, once, so that every forked service starts with it (and pyxs) in memory.
        from xetool.backends.simulator import vnc  # noqa: F401

        pid = os.fork()
        if pid:
            log.info("started %s for domain %d: pid %d", kind, domid, pid)
            return pid
        code = 1
        try:
            import gc

            gc.disable()  # this copy never runs the host again: no finaliser may touch its fds
            os.setsid()
            out = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.closerange(3, 1 << 16)  # the host's sockets: the service must not hold them open
            _set_process_name(f"{'qemu-dm' if kind == 'device-model' else 'vncterm'}-{domid}")
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            from xetool.backends.simulator import vnc

            code = vnc.main(argv)
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)

    def _reap(self, *_: object) -> None:
        """SIGCHLD: collect exited services, so none lingers as a zombie."""
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    def _watchdog(self) -> None:
        """Exit if our files were taken away (the state directory removed, or another host
        process started in our place): nobody could reach us any more."""
        try:
            mine = self.files.pid_file.read_text().strip() == str(os.getpid())
        except OSError:
            mine = False
        if not mine or not self.files.xenstored_socket.exists():
            log.warning("host %s: pid file or socket gone; exiting", self.host_uuid)
            self.loop.stop()
            return
        self.loop.call_later(WATCHDOG_INTERVAL, self._watchdog)

    def run(self) -> None:
        self.loop.call_later(WATCHDOG_INTERVAL, self._watchdog)
        try:
            self.loop.run()
        finally:
            self.hv.stop_all()
            self.backends.close()
            self.consoled.close()
            self.control.close()
            self.xenstored.shutdown()
            try:
                if self.files.pid_file.read_text().strip() == str(os.getpid()):
                    os.unlink(self.files.pid_file)
            except FileNotFoundError:
                pass
            if self.files.xenstored_socket.parent != self.files.dir:
                try:
                    self.files.xenstored_socket.parent.rmdir()  # the short /tmp directory, if empty
                except OSError:
                    pass
            log.info("host %s stopped", self.host_uuid)


def _set_process_name(name: str) -> None:
    """What ps and top show for a forked service (prctl PR_SET_NAME; 15 characters)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):
        pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="xetool-hostd")
    ap.add_argument("--state-dir", required=True, type=Path)
    ap.add_argument("--host-uuid", required=True)
    ap.add_argument("--memory-total-kib", type=int, required=True)
    ap.add_argument("--dom0-memory-kib", type=int, required=True)
    ap.add_argument("--cpus", type=int, required=True)
    ap.add_argument("--capabilities", default="pv,hvm")
    ap.add_argument("--hostname", default="simulated-host")
    ap.add_argument("--eagain", type=float, default=0.0)
    ap.add_argument("--ready-fd", type=int, default=-1)
    ap.add_argument("--foreground", action="store_true", help="do not detach")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.umask(0o077)  # whatever the operator's umask: the host's sockets, logs and files are theirs alone
    if not args.foreground and os.fork() > 0:
        os._exit(0)  # the starter reaps this parent at once; the child is reparented
    if not args.foreground:
        try:
            os.setsid()
        except OSError:
            pass  # already a session leader
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s hostd[{os.getpid()}] %(levelname)s %(message)s")
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        host = Host(args)
    except Exception as e:
        log.exception("the host could not start")
        if args.ready_fd >= 0:
            os.write(args.ready_fd, f"error {e}\n".encode())
        return 1
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: host.loop.call_threadsafe(host.loop.stop))
    signal.signal(signal.SIGCHLD, host._reap)
    host.files.pid_file.write_text(f"{os.getpid()}\n")
    log.info("host %s serving xenstored on %s", args.host_uuid, host.files.xenstored_socket)
    if args.ready_fd >= 0:
        os.write(args.ready_fd, f"ready {os.getpid()}\n".encode())
        os.close(args.ready_fd)
    host.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
