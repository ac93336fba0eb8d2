"""A pool of three remote hosts over real SSH (issue 12): each host is a network namespace with its
own sshd and its own simulated host, started there by the host's agent; the master is this test's
namespace, and every command is a real `xetool` process, as an operator runs it.

What is checked is what the operator sees (the command's output, status and errors) and what the
hosts hold (asked through their agents: `host-xenstore-ls`, `pool-check`), never the master's word
alone."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.remote.netns import SshLab
from xetool.host.calls import PROTOCOL


class Master:
    """The pool's master: a state directory on this machine, and `xetool` commands run on it."""

    def __init__(self, state: Path, lab: SshLab) -> None:
        self.state, self.lab = state, lab
        self.env = {**os.environ, "XETOOL_STATE_DIR": str(state)}
        self.env.pop("XETOOL_FIST", None)

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "xetool", *args], capture_output=True, text=True,
                              env={**self.env, **(env or {})}, timeout=timeout, stdin=subprocess.DEVNULL)

    def ok(self, *args: str, env: dict[str, str] | None = None) -> str:
        r = self.run(*args, env=env)
        assert r.returncode == 0, f"xetool {' '.join(args)} failed ({r.returncode}):\n{r.stderr}"
        return r.stdout

    def value(self, *args: str) -> str:
        return self.ok(*args, "--minimal").strip()

    def vms(self) -> list[dict[str, object]]:
        out = self.ok("vm-list", "params=uuid,name-label,power-state,resident-on,memory-static-max,"
                      "memory-overhead,current-operations", "--format", "json")
        rows: list[dict[str, object]] = json.loads(out)
        return rows

    def hosts(self) -> dict[str, dict[str, object]]:
        out = self.ok("host-list", "params=uuid,name-label,memory-total,dom0-memory,host-metrics-live", "--format", "json")
        return {str(h["uuid"]): h for h in json.loads(out)}

    def close(self) -> None:
        """Stop the pool's simulated hosts (on their machines), then this machine's shared SSH
        connections (each a background ssh that would outlive the test)."""
        from xetool.master.ssh import control_dir, end_shared_connections

        self.run("host-sim-stop", "--multiple", timeout=60)
        end_shared_connections(self.state)
        shutil.rmtree(control_dir(self.state), ignore_errors=True)  # outside the state directory when its path is long


def pool_toml(lab: SshLab, sr: Path, *, memory: str | list[str] = "2GiB", vms: int = 6, vm_memory: str = "256MiB",
              disks: int = 1, vifs: int = 1) -> str:
    """A pool of the lab's hosts (each reached by its alias in the lab's ssh_config), a shared
    file SR (a directory every namespace sees, as NFS would be), one network, and PV VMs."""
    pool = lab.pool_settings()
    lines = ['[pool]', 'name-label = "remote"', f'ssh-config = "{pool["ssh-config"]}"',
             f'ssh-identity = "{pool["ssh-identity"]}"', ""]
    for h in lab.hosts:
        s = lab.host_settings(h.index)
        size = memory[h.index] if isinstance(memory, list) else memory
        lines += ["[[host]]", f'name-label = "{h.name}"', f'memory = "{size}"', 'dom0-memory = "512MiB"', "cpus = 4",
                  f'address = "{h.address}"', f'ssh-alias = "{s["ssh-alias"]}"', f'agent-command = "{s["agent-command"]}"', ""]
    lines += ["[[sr]]", 'name-label = "nfs"', "shared = true", f'path = "{sr}"', "",
              "[[network]]", 'name-label = "lan"', 'bridge = "xenbr0"', ""]
    for n in range(vms):
        lines += ["[[vm]]", f'name-label = "vm{n:02d}"', f'memory = "{vm_memory}"', "vcpus = 1",
                  'PV-kernel = "/boot/vmlinuz-guest"']
        for d in range(disks):
            lines += ["  [[vm.disk]]", f"  device = {d}", '  size = "64MiB"', '  sr = "nfs"', f"  bootable = {str(d == 0).lower()}"]
        for v in range(vifs):
            lines += ["  [[vm.vif]]", f"  device = {v}", '  network = "lan"']
        lines.append("")
    return "\n".join(lines)


@pytest.fixture
def master(ssh_lab: SshLab, tmp_path: Path) -> Iterator[Master]:
    state = tmp_path / "master"
    m = Master(state, ssh_lab)
    yield m
    m.close()


def imported(master: Master, tmp_path: Path, **kw: object) -> Master:
    f = tmp_path / "pool.toml"
    f.write_text(pool_toml(master.lab, tmp_path / "nfs", **kw))  # type: ignore[arg-type]
    master.ok("pool-import", f"file={f}")
    return master


def domains_on(master: Master, host: str) -> set[str]:
    """The VMs whose domains the host runs, asked of the host itself (its /vm/<uuid> nodes)."""
    out = master.ok("host-xenstore-ls", f"host={host}", "path=/vm")
    return {m.group(1) for m in re.finditer(r"^/vm/([0-9a-f-]{36}) =", out, re.M)}


def assert_consistent(master: Master) -> None:
    """The store and the hosts agree (pool-check asks each host), nothing is marked, and no
    host holds more than its memory."""
    r = master.run("pool-check")
    assert r.returncode == 0, r.stdout + r.stderr
    hosts = master.hosts()
    load: dict[str, int] = {}
    for vm in master.vms():
        assert not vm["current-operations"], vm
        if vm["power-state"] in ("running", "paused"):
            load[str(vm["resident-on"])] = load.get(str(vm["resident-on"]), 0) + \
                int(vm["memory-static-max"]) + int(vm["memory-overhead"])  # type: ignore[call-overload]
    for host, used in load.items():
        h = hosts[host]
        assert used <= int(h["memory-total"]) - int(h["dom0-memory"]), (h["name-label"], used)  # type: ignore[call-overload]


def test_starts_are_placed_across_the_three_hosts_within_their_memory(master: Master, tmp_path: Path) -> None:
    imported(master, tmp_path, memory="2GiB", vms=12, vm_memory="384MiB")
    names = {str(h["uuid"]): str(h["name-label"]) for h in master.hosts().values()}
    started, refused = [], []
    for n in range(12):
        r = master.run("vm-start", f"vm=vm{n:02d}")
        (started if r.returncode == 0 else refused).append((n, r))
    for _, r in refused:  # the pool is full: refused by placement, in xapi's words, not a crash
        assert r.returncode == 1 and ("HOST_NOT_ENOUGH_FREE_MEMORY" in r.stderr or "no servers available" in r.stderr
                                      or "Not enough server memory" in r.stderr), r.stderr
    assert len(started) >= 6 and refused, (len(started), len(refused))
    running = [vm for vm in master.vms() if vm["power-state"] == "running"]
    by_host: dict[str, set[str]] = {}
    for vm in running:
        by_host.setdefault(str(vm["resident-on"]), set()).add(str(vm["uuid"]))
    assert set(by_host) == set(names), "every host took some of the VMs"
    for host, vms in by_host.items():
        assert domains_on(master, names[host]) == vms  # the host's own truth
    assert_consistent(master)


def test_the_lifecycle_of_a_vm_on_a_remote_host(master: Master, tmp_path: Path) -> None:
    imported(master, tmp_path, vms=1, disks=2, vifs=2)
    r = master.run("vm-start", "vm=vm00", "on=host2", "--trace")
    trace = r.stdout + r.stderr  # the trace goes to stderr
    assert r.returncode == 0, trace
    assert "│ create_vifs" in trace and "└ execute_on_host" in trace  # the remote steps, as they ran
    vm = master.value("vm-list", "name-label=vm00", "params=uuid")
    assert domains_on(master, "host2") == {vm}
    master.ok("vm-pause", "vm=vm00")
    assert master.value("vm-list", "name-label=vm00", "params=power-state") == "paused"
    master.ok("vm-unpause", "vm=vm00")
    domid = master.value("vm-list", "name-label=vm00", "params=dom-id")
    master.ok("vm-reboot", "vm=vm00")
    assert master.value("vm-list", "name-label=vm00", "params=dom-id") != domid
    assert domains_on(master, "host2") == {vm}
    vbd = master.value("vbd-list", f"vm-uuid={vm}", "userdevice=1", "params=uuid")
    vif = master.value("vif-list", f"vm-uuid={vm}", "device=1", "params=uuid")
    for cls, uuid in (("vbd", vbd), ("vif", vif)):
        master.ok(f"{cls}-unplug", f"uuid={uuid}")
        assert master.value(f"{cls}-list", f"uuid={uuid}", "params=currently-attached") == "false"
        backend = "vbd/" if cls == "vbd" else "vif/"
        assert master.ok("host-xenstore-ls", "host=host2", "path=/local/domain/0/backend").count(backend) >= 1
        master.ok(f"{cls}-plug", f"uuid={uuid}")
        assert master.value(f"{cls}-list", f"uuid={uuid}", "params=currently-attached") == "true"
    sims = master.ok("host-sim-list", "name-label=host2", "params=state,pid")
    assert "running" in sims
    master.ok("vm-shutdown", "vm=vm00")
    assert master.value("vm-list", "name-label=vm00", "params=power-state") == "halted"
    assert domains_on(master, "host2") == set()
    assert_consistent(master)


def test_a_host_whose_sshd_is_gone_is_offline_and_placement_passes_it_by(master: Master, ssh_lab: SshLab,
                                                                         tmp_path: Path) -> None:
    imported(master, tmp_path, vms=3)
    master.ok("vm-start", "vm=vm00", "on=host3")  # the shared connection to host3 is up
    ssh_lab.stop_sshd(2, sessions=True)  # the sshd and its sessions: the shared connection too
    r = master.run("vm-start", "vm=vm01", "on=host3")
    assert r.returncode == 1 and "HOST_OFFLINE" in r.stderr or "could not be contacted" in r.stderr, r.stderr
    assert "host3" in r.stderr and "Connection refused" in r.stderr  # ssh's own words
    assert "Traceback" not in r.stderr
    live = {str(h["name-label"]): h["host-metrics-live"] for h in master.hosts().values()}
    assert live == {"host1": True, "host2": True, "host3": False}
    dry = master.run("vm-start", "vm=vm01", "--dry-run")
    assert dry.returncode == 0 and re.search(r"host3.*refused: (Host down|not live)", dry.stdout, re.I), dry.stdout
    master.ok("vm-start", "vm=vm01")
    assert master.value("vm-list", "name-label=vm01", "params=resident-on") != master.value("host-list", "name-label=host3")
    r = master.run("vm-start", "vm=vm02", "on=host3")  # aimed at it: asked again, in ssh's words
    assert r.returncode == 1 and "Connection refused" in r.stderr, r.stderr
    ssh_lab.start_sshd(2)
    master.ok("vm-start", "vm=vm02", "on=host3")  # it answers again: live, and the start goes there
    assert master.hosts()[master.value("host-list", "name-label=host3")]["host-metrics-live"] is True
    # the host's VM ran on through it all: found there by its uuid
    assert master.value("vm-list", "name-label=vm00", "params=power-state") == "running"
    assert_consistent(master)


def test_a_start_that_cannot_reach_the_chosen_host_is_placed_again(master: Master, ssh_lab: SshLab,
                                                                  tmp_path: Path) -> None:
    imported(master, tmp_path, vms=1)
    dry = master.ok("vm-start", "vm=vm00", "seed=7", "--dry-run")
    first = int(re.search(r"would start on host(\d)", dry).group(1)) - 1  # type: ignore[union-attr]
    ssh_lab.stop_sshd(first, sessions=True)
    r = master.run("vm-start", "vm=vm00", "seed=7")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("could not be reached") == 1 and "Connection refused" in r.stderr, r.stderr
    names = {str(h["uuid"]): str(h["name-label"]) for h in master.hosts().values()}
    assert names[master.value("vm-list", "name-label=vm00", "params=resident-on")] != f"host{first + 1}"
    live = {str(h["name-label"]): h["host-metrics-live"] for h in master.hosts().values()}
    assert [n for n, up in live.items() if not up] == [f"host{first + 1}"]
    check = master.run("pool-check")  # it reports the host it cannot reach, in ssh's words
    assert check.returncode == 1 and "cannot be reached" in check.stdout + check.stderr, check.stdout + check.stderr
    ssh_lab.start_sshd(first)
    master.ok("pool-check", "--repair")
    assert_consistent(master)


def test_lists_and_completion_never_contact_a_host(master: Master, ssh_lab: SshLab, tmp_path: Path) -> None:
    imported(master, tmp_path, vms=3)
    master.ok("vm-start", "vm=vm00", "on=host1")
    for i in range(3):
        ssh_lab.link_down(i)  # every host unreachable: a command that asked one would wait seconds
    for args in (("host-list",), ("vm-list",), ("vm-list", "power-state=running", "--minimal"),
                 ("vm-param-get", "uuid=" + master.value("vm-list", "name-label=vm00", "params=uuid"), "param-name=power-state")):
        began = time.monotonic()
        master.ok(*args)
        assert time.monotonic() - began < 2, args
    from tests.shell.test_completion_bash import complete

    began = time.monotonic()
    assert "vm00" in complete("xetool vm-shutdown vm=", master.state).replies
    assert time.monotonic() - began < 3


def test_an_unknown_agent_command_is_offline_with_the_reason(master: Master, tmp_path: Path) -> None:
    imported(master, tmp_path, vms=1)
    master.ok("host-param-set", f"uuid={master.value('host-list', 'name-label=host1')}",
              "agent-command=/nonexistent/xetool host-agent")
    r = master.run("vm-start", "vm=vm00", "on=host1")
    assert r.returncode == 1 and "not found" in r.stderr and "install xetool on the host" in r.stderr, r.stderr
    assert master.value("vm-list", "name-label=vm00", "params=power-state") == "halted"


def test_the_link_lost_during_a_start_leaves_the_pool_consistent(master: Master, ssh_lab: SshLab, tmp_path: Path) -> None:
    imported(master, tmp_path, vms=1)
    master.ok("host-compute-free-memory", "host=host2")  # the shared connection and the host are up
    vm = master.value("vm-list", "name-label=vm00", "params=uuid")
    start = subprocess.Popen([sys.executable, "-m", "xetool", "vm-start", "vm=vm00", "on=host2", "--trace"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**master.env, "XETOOL_FIST": "create_vifs:delay=3"})
    assert start.stderr is not None
    for line in start.stderr:  # the host's steps arrive as they run (the trace is on stderr): down the link in create_vifs
        if "attach_vdis" in line:
            break
    ssh_lab.link_down(1)
    began = time.monotonic()
    out, err = start.communicate(timeout=60)
    assert start.returncode == 1 and "HOST_AGENT_CONNECTION_LOST" in err or "connection to the host's agent was lost" in err, err
    assert time.monotonic() - began < 30, "a lost link is noticed in seconds"
    ssh_lab.link_up(1)
    master.ok("pool-check", "--repair")  # the host's resync, through its agent
    state = master.value("vm-list", "name-label=vm00", "params=power-state")
    on_host = domains_on(master, "host2")
    assert (state == "running" and on_host == {vm}) or (state == "halted" and on_host == set()), (state, on_host)
    assert_consistent(master)


def test_eight_processes_start_sixty_vms_across_the_hosts_without_over_commit(master: Master, tmp_path: Path) -> None:
    imported(master, tmp_path, memory="4GiB", vms=60, vm_memory="256MiB", vifs=0)
    script = ("import subprocess, sys\n"
              "for n in range(int(sys.argv[1]), 60, 8):\n"
              "    r = subprocess.run([sys.executable, '-m', 'xetool', 'vm-start', f'vm=vm{n:02d}'], capture_output=True, text=True)\n"
              "    print(n, r.returncode, r.stderr.replace(chr(10), ' | '), flush=True)\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(k)], stdout=subprocess.PIPE, text=True, env=master.env)
             for k in range(8)]
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        results += [line.split(" ", 2) for line in out.splitlines()]
    assert len(results) == 60
    codes = {int(rc) for _, rc, _ in results}
    assert codes <= {0, 1}, [r for r in results if r[1] not in ("0", "1")]
    for _, rc, err in results:
        if rc == "1":
            assert "memory" in err.lower() or "no servers available" in err, err
    running = [vm for vm in master.vms() if vm["power-state"] == "running"]
    assert len(running) == sum(1 for _, rc, _ in results if rc == "0") and len(running) >= 30
    names = {str(h["uuid"]): str(h["name-label"]) for h in master.hosts().values()}
    for host, name in names.items():
        assert domains_on(master, name) == {str(v["uuid"]) for v in running if v["resident-on"] == host}
    assert_consistent(master)


def test_a_local_sr_of_one_remote_host_holds_its_disks_there(master: Master, ssh_lab: SshLab, tmp_path: Path) -> None:
    """An SR only host2 sees (a PBD on host2 alone): its disks are made on host2, by its agent, and
    a VM with such a disk can start there only."""
    imported(master, tmp_path, vms=1)
    local = ssh_lab.host(1).state_dir / "local-sr"  # host2's own directory
    extra = tmp_path / "local.toml"
    extra.write_text(f'[[sr]]\nname-label = "host2-local"\nshared = false\nhosts = ["host2"]\npath = "{local}"\n\n'
                     '[[vm]]\nname-label = "pinned"\nmemory = "256MiB"\nPV-kernel = "/boot/vmlinuz-guest"\n'
                     '  [[vm.disk]]\n  device = 0\n  size = "64MiB"\n  sr = "host2-local"\n  bootable = true\n')
    master.ok("pool-import", f"file={extra}")
    vdi = master.value("vdi-list", "name-label=pinned disk 0", "params=uuid")
    made = ssh_lab.ssh(1, f"stat -c '%a %s' {local}/{vdi}.raw")  # ssh hands the remote shell one line
    assert made.returncode == 0 and made.stdout.split() == ["600", str(64 << 20)], made.stdout + made.stderr
    pbds = master.ok("pbd-list", f"sr-uuid={master.value('sr-list', 'name-label=host2-local', 'params=uuid')}",
                     "params=host-uuid", "--minimal")
    assert pbds.strip() == master.value("host-list", "name-label=host2")
    r = master.run("vm-start", "vm=pinned", "on=host1")
    assert r.returncode == 1 and "SR" in r.stderr, r.stderr  # host1 does not see the SR
    master.ok("vm-start", "vm=pinned")
    assert master.value("vm-list", "name-label=pinned", "params=resident-on") == master.value("host-list", "name-label=host2")
    master.ok("vm-shutdown", "vm=pinned", "--force")
    vbd = master.value("vbd-list", f"vm-uuid={master.value('vm-list', 'name-label=pinned', 'params=uuid')}", "params=uuid")
    master.ok("vbd-destroy", f"uuid={vbd}")
    master.ok("vdi-destroy", f"uuid={vdi}")
    assert ssh_lab.ssh(1, "test", "-e", f"{local}/{vdi}.raw").returncode == 1  # removed there


def test_a_remote_console_is_forwarded_here(master: Master, tmp_path: Path) -> None:
    import socket

    imported(master, tmp_path, vms=1)
    master.ok("vm-start", "vm=vm00", "on=host3")
    shown = master.ok("vm-vnc", "vm=vm00")
    assert "ssh -N -L 127.0.0.1:" in shown and "--forward" in shown and "Password: " in shown, shown
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fwd = subprocess.Popen([sys.executable, "-m", "xetool", "vm-vnc", "vm=vm00", "--forward", f"local-port={port}"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=master.env)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                    assert c.recv(12) == b"RFB 003.008\n"  # the console server's greeting, from host3
                    break
            except (ConnectionRefusedError, ConnectionResetError):
                assert fwd.poll() is None and time.monotonic() < deadline, fwd.communicate()
                time.sleep(0.1)
    finally:
        fwd.terminate()
        fwd.communicate(timeout=10)
    r = master.run("vm-vnc", "vm=vm00", "--forward", "local-port=99999")
    assert r.returncode == 1 and "local-port" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_a_remote_host_that_crashed_is_resynced_by_the_next_command(master: Master, ssh_lab: SshLab,
                                                                    tmp_path: Path) -> None:
    import signal

    imported(master, tmp_path, vms=2)
    master.ok("vm-start", "vm=vm00", "on=host1")
    hostd = [p for p in ssh_lab.processes(0) if "simulator.hostd" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")]
    assert hostd
    for pid in hostd:  # the host's hypervisor dies (its processes), and its domains with it
        os.kill(pid, signal.SIGKILL)
    master.ok("vm-start", "vm=vm01", "on=host1")  # reaches it: started anew, then matched with the store
    assert master.value("vm-list", "name-label=vm00", "params=power-state") == "halted"
    assert master.value("vm-list", "name-label=vm01", "params=power-state") == "running"
    vm00 = master.value("vm-list", "name-label=vm00", "params=uuid")
    assert vm00 in master.ok("message-list", "params=obj-uuid,body")
    assert domains_on(master, "host1") == {master.value("vm-list", "name-label=vm01", "params=uuid")}
    assert_consistent(master)


def test_an_agent_per_command_works_the_same(master: Master, ssh_lab: SshLab, tmp_path: Path) -> None:
    """XETOOL_SSH_AGENT=session (or a host whose sshd refuses stream forwarding): an agent started
    over SSH for each command, serving it alone on its standard input and output."""
    imported(master, tmp_path, vms=2)
    session = {"XETOOL_SSH_AGENT": "session"}
    master.ok("vm-start", "vm=vm00", "on=host2", env=session)
    vm = master.value("vm-list", "name-label=vm00", "params=uuid")
    assert domains_on(master, "host2") == {vm}
    master.ok("vm-shutdown", "vm=vm00", env=session)
    assert master.value("vm-list", "name-label=vm00", "params=power-state") == "halted"
    ssh_lab.stop_sshd(1, sessions=True)
    r = master.run("vm-start", "vm=vm01", "on=host2", env=session)
    assert r.returncode == 1 and "Connection refused" in r.stderr and "host2" in r.stderr, r.stderr
    ssh_lab.start_sshd(1)
    master.ok("pool-check", "--repair", env=session)
    master.ok("vm-start", "vm=vm01", "on=host2", env=session)
    assert_consistent(master)


OLD_AGENT = """
import json, os, socket, sys
listener = socket.socket(socket.AF_UNIX)
listener.bind(sys.argv[1])
listener.listen(8)
hello = {"hello": {"protocol": 0, "xetool": "0.0.1", "pid": os.getpid(), "code": "before-the-upgrade"}}
while True:
    conn, _ = listener.accept()
    conn.sendall(json.dumps(hello).encode() + b"\\n")
    conn.recv(65536)  # what it is asked goes unanswered
    conn.close()
"""


def test_an_agent_left_from_before_an_upgrade_is_replaced(master: Master, ssh_lab: SshLab, tmp_path: Path) -> None:
    """The long-running agent a command reaches through the shared connection speaks another
    protocol (it ran before xetool on the host was upgraded): `--listen` replaces it with the
    host's own, and the command goes on."""
    imported(master, tmp_path, vms=1)
    master.ok("vm-start", "vm=vm00", "on=host1")  # the agent runs there, and the forwarding to it here
    agent = ssh_lab.agent_command.split()
    where = json.loads(ssh_lab.ssh(0, *agent, "--listen").stdout)
    assert ssh_lab.ssh(0, *agent, "--stop").returncode == 0
    script = tmp_path / "old_agent.py"
    script.write_text(OLD_AGENT)
    ssh_lab.ssh(0, f"setsid {shlex.join([sys.executable, str(script), where['socket']])} </dev/null >/dev/null 2>&1 &")
    greet = ("import socket, sys, time\nfor _ in range(100):\n    s = socket.socket(socket.AF_UNIX)\n    try:\n"
             "        s.connect(sys.argv[1])\n        break\n    except OSError:\n        time.sleep(0.05)\n"
             "sys.stdout.write(s.makefile().readline())\n")
    old = json.loads(ssh_lab.ssh(0, shlex.join([sys.executable, "-c", greet, where["socket"]])).stdout)
    assert old["hello"]["protocol"] == 0
    master.ok("vm-shutdown", "vm=vm00")
    assert master.value("vm-list", "name-label=vm00", "params=power-state") == "halted"
    assert old["hello"]["pid"] not in ssh_lab.processes(0)
    assert json.loads(ssh_lab.ssh(0, *agent, "--listen").stdout)["protocol"] == PROTOCOL
