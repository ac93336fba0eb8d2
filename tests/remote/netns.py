"""A lab of remote hosts on one machine (issue 12): each host is a network namespace of its own,
joined to the test's namespace by a veth pair, with its own Debian `sshd` run in the foreground,
so a pool master in the test's namespace reaches it over real SSH and real TCP.

    with SshLab(3, tmp / "lab") as lab:
        subprocess.run(lab.ssh_command(0, "true"))      # ssh -F <lab>/ssh_config xt-host1 true

Addresses come from 198.18.0.0/15 (RFC 2544's benchmarking block), a /30 per host, on the veths
only. The namespaces have no default route, and the run's block has a blackhole route in the
test's namespace: were a veth's end there taken down or deleted, packets to its host would be
dropped rather than follow the machine's default route out. A run's names carry its pid and its
block is chosen under a lock among those no address or route on this machine uses, so concurrent
runs do not collide. `close()` kills whatever
runs in the namespaces, deletes the veths, the namespaces and the work directory; it is safe
after a setup that failed half way and when called twice.

Needs root, iproute2 with `ip netns`, openssh-server and openssh-client (`unavailable()` says
which is missing).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import ipaddress
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Iterator

from tests.stopping import stop_processes
from xetool.processes import alive

SSHD = "/usr/sbin/sshd"
SSHD_PRIVSEP_DIR = Path("/run/sshd")  # sshd refuses to start without it (Debian creates it at boot via systemd)
BLOCK = ipaddress.IPv4Network("198.18.0.0/15")
RUN_PREFIX = 26  # one run's share of the block: 16 hosts of a /30 each
MAX_HOSTS = 2 ** (30 - RUN_PREFIX)
LOCK = Path("/run/xetool-sshlab.lock")
PEER = "eth0"  # the host's end of its veth, inside its namespace
CONNECT_TIMEOUT = 3
READY_TIMEOUT = 15.0
# A namespace of this harness: xt<pid><run letter>h<host number>
NAME = re.compile(r"^xt(\d+)[a-z]h\d+$")

_runs = 0  # labs this process has made: the run letter


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise LabError(f"ip {' '.join(args)}: {r.stderr.strip() or f'exit {r.returncode}'}")
    return r


class LabError(RuntimeError):
    """The lab could not be set up or changed (the message says which command failed and why)."""


def skip_unless_a_lab_can_run() -> None:
    """Skip the test, with the reason, where an SshLab cannot run (not root, no `ip netns`, no sshd)."""
    import pytest

    reason = unavailable()
    if reason:
        pytest.skip(reason)


@functools.lru_cache(maxsize=1)
def unavailable() -> str | None:
    """None when an SshLab can run here, else why not (a test skips with it)."""
    if os.geteuid() != 0:
        return "the SSH lab needs root (network namespaces, veths, sshd)"
    for tool in ("ip", "ss", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"the SSH lab needs `{tool}` (iproute2 / openssh-client)"
    if not os.access(SSHD, os.X_OK):
        return f"the SSH lab needs {SSHD} (openssh-server)"
    # Root in a container may still lack the right to make namespaces and veths: try both.
    probe = f"xt{os.getpid()}zh0"
    try:
        r = _ip("netns", "add", probe, check=False)
        if r.returncode != 0:
            return f"`ip netns add` fails here: {r.stderr.strip()}"
        r = _ip("link", "add", probe, "type", "veth", "peer", "name", PEER, "netns", probe, check=False)
        if r.returncode != 0:
            return f"cannot make a veth pair here: {r.stderr.strip()}"
    finally:
        _ip("link", "del", probe, check=False)
        _ip("netns", "del", probe, check=False)
    return None


@dataclass(frozen=True)
class LabHost:
    """One host of the lab."""

    index: int  # 0-based, as SshLab's methods take it
    name: str  # host1, host2, ...
    namespace: str  # its network namespace (`ip netns`)
    veth: str  # the test's end of its veth pair (in the test's namespace); its own end is PEER
    address: str  # its address, on its end of the veth; sshd listens there on port 22
    gateway: str  # the test's address on the other end
    alias: str  # its Host entry in the lab's ssh_config
    state_dir: Path  # XETOOL_STATE_DIR of every command run through its sshd (mode 0700)
    sshd_config: Path
    sshd_log: Path  # sshd's stderr (-e)


class SshLab:
    """`n_hosts` hosts, each its own network namespace with its own sshd, reached from the test's
    namespace through the lab's ssh_config (an alias a host: xt-host1, ...). A context manager;
    entering sets everything up (cleaning up and raising on a failure), leaving closes it."""

    def __init__(self, n_hosts: int, workdir: Path) -> None:
        global _runs
        if not 1 <= n_hosts <= MAX_HOSTS:
            raise ValueError(f"an SshLab has 1 to {MAX_HOSTS} hosts, not {n_hosts}")
        self.n_hosts = n_hosts
        self.workdir = Path(workdir)
        self.prefix = f"xt{os.getpid()}{chr(ord('a') + _runs % 26)}"
        _runs += 1
        self.hosts: list[LabHost] = []
        self.ssh_config = self.workdir / "ssh_config"
        self.identity = self.workdir / "id_ed25519"
        self.known_hosts = self.workdir / "known_hosts"
        self.authorized_keys = self.workdir / "authorized_keys"
        # the agent as the master would run it on each host: this interpreter, so a virtualenv
        # works without the remote PATH knowing it
        self.agent_command = f"{sys.executable} -m xetool host-agent"
        self._sshd: dict[int, subprocess.Popen[bytes]] = {}
        self._namespaces: list[str] = []  # made so far (close() removes exactly these)
        self.block: str | None = None  # the run's addresses (a /26), once claimed by its blackhole route
        self._down: set[int] = set()  # hosts whose link link_down took down
        self._closed = False

    # -- context manager ---------------------------------------------------------------------

    def __enter__(self) -> SshLab:
        self.setup()
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- setup --------------------------------------------------------------------------------

    def setup(self) -> None:
        """Make the namespaces, veths, keys and configs, start every sshd and wait until each
        accepts a login. On any failure, close() what was made and re-raise."""
        try:
            self.workdir.mkdir(parents=True, exist_ok=False)
            self._network()
            self._keys_and_configs()
            SSHD_PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
            for h in self.hosts:
                self._spawn_sshd(h)
            for h in self.hosts:
                self._wait_ready(h)
        except BaseException:
            self.close()
            raise

    def _network(self) -> None:
        with _locked():
            sweep_stale()
            block = _free_block()
            _ip("route", "add", "blackhole", str(block))
            self.block = str(block)
            for i in range(self.n_hosts):
                net = list(block.subnets(new_prefix=30))[i]
                gateway, address = str(net[1]), str(net[2])
                ns = f"{self.prefix}h{i + 1}"
                name = f"host{i + 1}"
                _ip("netns", "add", ns)
                self._namespaces.append(ns)
                # the test's end is named as the namespace: found by name, and gone with it
                _ip("link", "add", ns, "type", "veth", "peer", "name", PEER, "netns", ns)
                # no IPv6 on the veths: no link-local addresses, no router or neighbour chatter
                _disable_ipv6(None, ns)
                _disable_ipv6(ns, PEER)
                _ip("addr", "add", f"{gateway}/30", "dev", ns)
                _ip("-n", ns, "addr", "add", f"{address}/30", "dev", PEER)
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", ns, "link", "set", PEER, "up")
                _ip("link", "set", ns, "up")
                host_dir = self.workdir / name
                self.hosts.append(LabHost(
                    index=i, name=name, namespace=ns, veth=ns, address=address, gateway=gateway,
                    alias=f"xt-{name}", state_dir=host_dir / "state", sshd_config=host_dir / "sshd_config",
                    sshd_log=host_dir / "sshd.log"))

    def _keys_and_configs(self) -> None:
        _keygen(self.identity, "xetool-lab-master")
        self.authorized_keys.write_text(self.identity.with_suffix(".pub").read_text())
        known: list[str] = []
        client: list[str] = [f"# the lab's hosts ({self.prefix}), as an operator's dedicated ssh config\n"]
        env = {"XETOOL_STATE_DIR": ""}
        for var in ("XETOOL_TEST_SESSION", "PYTHONPATH"):
            if os.environ.get(var):
                env[var] = os.environ[var]
        for h in self.hosts:
            host_dir = h.sshd_config.parent
            host_dir.mkdir()
            h.state_dir.mkdir(mode=0o700)
            key = host_dir / "ssh_host_ed25519_key"
            _keygen(key, h.name)
            kind, blob = key.with_suffix(".pub").read_text().split()[:2]
            known.append(f"{h.address} {kind} {blob}\n")
            env["XETOOL_STATE_DIR"] = str(h.state_dir)
            h.sshd_config.write_text(
                f"# sshd of lab host {h.name}, in network namespace {h.namespace}\n"
                f"ListenAddress {h.address}:22\n"
                f"HostKey {key}\n"
                f"PidFile {host_dir / 'sshd.pid'}\n"
                f"AuthorizedKeysFile {self.authorized_keys}\n"
                "PermitRootLogin prohibit-password\n"
                "PubkeyAuthentication yes\n"
                "PasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\n"
                "UsePAM no\n"
                "StrictModes no\n"
                "PrintMotd no\n"
                "LogLevel VERBOSE\n"
                f"SetEnv {' '.join(_setenv_word(k, v) for k, v in env.items())}\n")
            client.append(
                f"\nHost {h.alias}\n"
                f"    HostName {h.address}\n"
                "    Port 22\n"
                "    User root\n"
                f"    IdentityFile {self.identity}\n"
                "    IdentitiesOnly yes\n"
                f"    UserKnownHostsFile {self.known_hosts}\n"
                "    GlobalKnownHostsFile /dev/null\n"
                "    StrictHostKeyChecking yes\n"
                "    BatchMode yes\n"
                f"    ConnectTimeout {CONNECT_TIMEOUT}\n")
        self.known_hosts.write_text("".join(known))
        self.ssh_config.write_text("".join(client))

    def _spawn_sshd(self, h: LabHost) -> None:
        with open(h.sshd_log, "ab") as log:
            self._sshd[h.index] = subprocess.Popen(
                ["ip", "netns", "exec", h.namespace, SSHD, "-D", "-e", "-f", str(h.sshd_config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)

    def _wait_ready(self, h: LabHost) -> None:
        """Until a real login through the lab's config runs `true` (bounded)."""
        deadline = time.monotonic() + READY_TIMEOUT
        last = ""
        while True:
            proc = self._sshd[h.index]
            if proc.poll() is not None:
                raise LabError(f"sshd of {h.name} exited ({proc.returncode}): {_tail(h.sshd_log)}")
            r = subprocess.run(self.ssh_command(h.index, "true", options=("-o", "ConnectTimeout=1")),
                               capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
            if r.returncode == 0:
                return
            last = r.stderr.strip()
            if time.monotonic() > deadline:
                raise LabError(f"sshd of {h.name} does not accept a login after {READY_TIMEOUT:.0f}s: "
                               f"{last}; sshd log: {_tail(h.sshd_log)}")
            time.sleep(0.05)

    # -- use ----------------------------------------------------------------------------------

    def host(self, i: int) -> LabHost:
        return self.hosts[i]

    def ssh_command(self, i: int, *command: str, options: tuple[str, ...] = ()) -> list[str]:
        """ssh through the lab's config to host i: `ssh -F cfg [options] alias [command...]`."""
        return ["ssh", "-F", str(self.ssh_config), *options, self.hosts[i].alias, *command]

    def ssh(self, i: int, *command: str, options: tuple[str, ...] = (), timeout: float = 30,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command on host i and wait for it (text output captured)."""
        return subprocess.run(self.ssh_command(i, *command, options=options), capture_output=True,
                              text=True, timeout=timeout, input=input,
                              stdin=subprocess.DEVNULL if input is None else None)

    def pool_settings(self) -> dict[str, str]:
        """The `[pool]` keys of pool-import's TOML that reach the lab."""
        return {"ssh-config": str(self.ssh_config), "ssh-identity": str(self.identity)}

    def host_settings(self, i: int) -> dict[str, str]:
        """The SSH keys of host i's `[[host]]` entry in pool-import's TOML."""
        return {"ssh-alias": self.hosts[i].alias, "agent-command": self.agent_command}

    def sshd_running(self, i: int) -> bool:
        p = self._sshd.get(i)
        return p is not None and p.poll() is None

    def stop_sshd(self, i: int, sessions: bool = False) -> None:
        """Stop host i's listening sshd: new connections are refused. Established connections
        live on in their own sshd processes (as when a real sshd restarts), unless `sessions`,
        which kills those too (their remote commands see their input close)."""
        p = self._sshd.pop(i, None)
        if p is not None:
            _stop(p)
        if sessions:
            stop_processes([pid for pid in _netns_pids(self.hosts[i].namespace) if _comm(pid) == "sshd"])

    def start_sshd(self, i: int) -> None:
        """Start host i's sshd again (no-op when it runs) and wait until it accepts a login."""
        if not self.sshd_running(i):
            self._spawn_sshd(self.hosts[i])
        self._wait_ready(self.hosts[i])

    def link_down(self, i: int) -> None:
        """Take host i's end of its veth down: the host vanishes from the network, packets to it
        are lost (connects time out, established connections stall), its processes go on."""
        h = self.hosts[i]
        _ip("-n", h.namespace, "link", "set", PEER, "down")
        self._down.add(i)

    def link_up(self, i: int) -> None:
        """Bring host i's end of its veth back up (its address and sshd are still there)."""
        h = self.hosts[i]
        _ip("-n", h.namespace, "link", "set", PEER, "up")
        # the neighbours that went unanswered while it was down would answer "no route to host"
        # for a few seconds more: a link that comes back is reachable at once
        _ip("neigh", "flush", "dev", h.veth, check=False)
        _ip("-n", h.namespace, "neigh", "flush", "dev", PEER, check=False)
        deadline = time.monotonic() + 5
        while "LOWER_UP" not in _ip("-n", h.namespace, "link", "show", PEER).stdout:
            if time.monotonic() > deadline:
                raise LabError(f"{h.name}'s link does not come back up")
            time.sleep(0.02)
        self._down.discard(i)

    def restore(self) -> None:
        """Every link up and every sshd running: the lab as set up, after a test disturbed it
        (what it did not disturb is left alone, so this is quick)."""
        for i in sorted(self._down):
            self.link_up(i)
        for h in self.hosts:
            if not self.sshd_running(h.index):
                self.start_sshd(h.index)

    def processes(self, i: int) -> list[int]:
        """Every process in host i's namespace (sshd, sessions, agents, simulated hosts)."""
        return _netns_pids(self.hosts[i].namespace)

    # -- teardown -----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop sshd, kill every process left in each namespace, delete the veths, the
        namespaces and the work directory. Safe after a partial setup, and idempotent."""
        if self._closed:
            return
        errors: list[str] = []
        # links up first, so that the FIN of every connection killed below reaches its client
        for h in self.hosts:
            _ip("-n", h.namespace, "link", "set", PEER, "up", check=False)
        for i in list(self._sshd):
            with contextlib.suppress(Exception):
                _stop(self._sshd.pop(i))
        for ns in self._namespaces:
            with contextlib.suppress(Exception):
                _kill_namespace(ns)
        if self.block is not None:
            _drop_connections(self.block, grace=1.0)
        for ns in self._namespaces:
            try:
                remove_namespace(ns)
            except Exception as err:  # go on with the others; report all at the end
                errors.append(f"{ns}: {err}")
        if self.block is not None:
            # a client still connecting to a host that is gone would retransmit through the
            # default route once the blackhole goes: its connection is destroyed first
            left = _drop_connections(self.block, grace=0.0)
            if left:
                errors.append(f"connections to {self.block} that ss -K cannot destroy ({'; '.join(left)}),"
                              " so the blackhole route stays")
                self._closed = False
                raise LabError("could not remove: " + "; ".join(errors))
            _ip("route", "del", "blackhole", self.block, check=False)
            if blackholes().count(self.block):
                errors.append(f"the blackhole route {self.block}")
            else:
                self.block = None
        if self.workdir.exists():
            shutil.rmtree(self.workdir, ignore_errors=True)
        self._closed = not errors
        if errors:
            raise LabError("could not remove: " + "; ".join(errors))


# -- helpers ------------------------------------------------------------------------------------


def remove_namespace(ns: str) -> None:
    """Kill every process in a namespace, delete its veth and the namespace, and wait until the
    kernel has let go of the veth (a namespace is dismantled asynchronously)."""
    if ns in namespaces():
        _kill_namespace(ns)
        _ip("link", "del", ns, check=False)
        _ip("netns", "del", ns, check=False)
    else:
        _ip("link", "del", ns, check=False)
    deadline = time.monotonic() + 10
    while _ip("link", "show", ns, check=False).returncode == 0 or ns in namespaces():
        if time.monotonic() > deadline:
            raise LabError(f"{ns} (namespace or veth) is still there after 10s")
        time.sleep(0.05)


def _kill_namespace(ns: str) -> None:
    """Kill every process in a namespace (TERM, then KILL)."""
    for _ in range(5):  # killed processes may have started others meanwhile
        pids = _netns_pids(ns)
        if not pids:
            return
        stop_processes(pids)


def _connections(block: str) -> list[str]:
    r = subprocess.run(["ss", "-Htn", "dst", block], capture_output=True, text=True, timeout=10)
    return [" ".join(line.split()) for line in r.stdout.splitlines() if line.strip()]


def _drop_connections(block: str, grace: float) -> list[str]:
    """Let the test's namespace's TCP connections to `block` end by themselves for `grace`
    seconds, then destroy the rest (`ss -K`); returns those still there."""
    deadline = time.monotonic() + grace
    while _connections(block) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _connections(block):
        subprocess.run(["ss", "-K", "-tn", "dst", block], capture_output=True, timeout=10)
    return _connections(block)


def namespaces() -> list[str]:
    """The named network namespaces on this machine."""
    return [line.split()[0] for line in _ip("netns", "list").stdout.splitlines() if line.strip()]


def sweep_stale() -> list[str]:
    """Remove what an SshLab of a process that no longer exists left behind (a run killed before
    it could close): its namespaces, and blackhole routes of the block no address of this
    machine lies in any more. Called under the lock; returns what it removed."""
    gone = []
    for ns in namespaces():
        m = NAME.match(ns)
        if m and not alive(int(m.group(1))):
            remove_namespace(ns)
            gone.append(ns)
    used = _addresses()
    for route in blackholes():
        net = ipaddress.IPv4Network(route)
        if net.prefixlen == RUN_PREFIX and not any(net.overlaps(u) for u in used):
            _ip("route", "del", "blackhole", route, check=False)
            gone.append(f"blackhole {route}")
    return gone


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """Serialise choosing a block and claiming it (its first address) among concurrent runs."""
    with open(LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _addresses() -> list[ipaddress.IPv4Network]:
    """The IPv4 networks of the addresses in this (the test's) namespace."""
    used = []
    for line in _ip("-o", "-4", "addr", "show").stdout.splitlines():
        m = re.search(r"\binet (\d+\.\d+\.\d+\.\d+)/(\d+)", line)
        if m:
            used.append(ipaddress.IPv4Network(f"{m.group(1)}/{m.group(2)}", strict=False))
    return used


def blackholes() -> list[str]:
    """The blackhole routes inside BLOCK in this namespace's main table."""
    found = []
    for line in _ip("-4", "route", "show", "type", "blackhole").stdout.splitlines():
        words = line.split()
        dest = words[1] if words[:1] == ["blackhole"] else words[0] if words else ""
        with contextlib.suppress(ValueError):
            if ipaddress.IPv4Network(dest).subnet_of(BLOCK):
                found.append(dest)
    return found


def _free_block() -> ipaddress.IPv4Network:
    """A /26 of 198.18.0.0/15 that no address or route on this machine lies in, searched from
    one the pid picks. The caller holds the lock and claims it with a route before letting go."""
    used = _addresses() + [ipaddress.IPv4Network(r) for r in blackholes()]
    blocks = list(BLOCK.subnets(new_prefix=RUN_PREFIX))
    start = os.getpid() % len(blocks)
    for k in range(len(blocks)):
        block = blocks[(start + k) % len(blocks)]
        if not any(block.overlaps(u) for u in used):
            return block
    raise LabError(f"no free /{RUN_PREFIX} left in {BLOCK} on this machine")


def _disable_ipv6(ns: str | None, dev: str) -> None:
    knob = f"/proc/sys/net/ipv6/conf/{dev}/disable_ipv6"
    if ns is None:
        if os.path.exists(knob):
            Path(knob).write_text("1")
        return
    subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", f"[ ! -e {knob} ] || echo 1 > {knob}"],
                   check=True, timeout=10)


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True, timeout=30)


def _setenv_word(name: str, value: str) -> str:
    """One NAME=value word of sshd_config's SetEnv (quoted when it holds a space)."""
    if '"' in value or "\n" in value:
        raise LabError(f"{name} holds a quote or newline, which sshd_config cannot carry: {value!r}")
    word = f"{name}={value}"
    return f'"{word}"' if any(c.isspace() for c in word) else word


def _netns_pids(ns: str) -> list[int]:
    r = _ip("netns", "pids", ns, check=False)
    return [int(p) for p in r.stdout.split()] if r.returncode == 0 else []


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _stop(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:].strip() or "(empty)"
    except OSError:
        return "(no log)"
