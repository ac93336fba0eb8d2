"""The SSH lab itself (tests/remote/netns.py): each alias of its ssh_config logs into its own
namespace with the environment sshd sets, a stopped sshd and a link taken down fail the way a
master has to notice, connection sharing works through the lab's config, `xetool host-agent`
greets through ssh, and close() leaves nothing of the run behind, even after a failed setup."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.remote import netns
from tests.remote.netns import CONNECT_TIMEOUT, SshLab
from xetool.host.calls import PROTOCOL
from xetool.processes import alive


def timed(lab: SshLab, i: int, *command: str, options: tuple[str, ...] = ()) -> tuple[float, int, str]:
    start = time.monotonic()
    r = lab.ssh(i, *command, options=options, timeout=30)
    return time.monotonic() - start, r.returncode, r.stderr


def test_each_alias_logs_into_its_own_namespace(ssh_lab: SshLab) -> None:
    for h in ssh_lab.hosts:
        r = ssh_lab.ssh(h.index, "ip netns identify $$; ip -o -4 addr show scope global")
        assert r.returncode == 0, r.stderr
        identify, *addrs = r.stdout.splitlines()
        assert identify == h.namespace
        assert [line.split()[3] for line in addrs] == [f"{h.address}/30"]
    # each address lives only in its namespace: the test's side holds the gateways only
    here = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
    for h in ssh_lab.hosts:
        assert f"inet {h.gateway}/30" in here and f"inet {h.address}/" not in here
    assert len({h.address for h in ssh_lab.hosts}) == len(ssh_lab.hosts)


def test_sshd_sets_the_hosts_environment(ssh_lab: SshLab) -> None:
    for h in ssh_lab.hosts:
        r = ssh_lab.ssh(h.index, 'echo "$XETOOL_STATE_DIR"; stat -c %a "$XETOOL_STATE_DIR"; echo "$XETOOL_TEST_SESSION"')
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == [str(h.state_dir), "700", os.environ.get("XETOOL_TEST_SESSION", "")]


def test_a_stopped_sshd_refuses_at_once_and_comes_back(ssh_lab: SshLab) -> None:
    ssh_lab.stop_sshd(1)
    assert not ssh_lab.sshd_running(1)
    seconds, rc, err = timed(ssh_lab, 1, "true")
    assert rc == 255 and "refused" in err and seconds < 2, (seconds, err)
    assert timed(ssh_lab, 0, "true")[1] == 0  # the other hosts are not touched
    ssh_lab.start_sshd(1)
    assert timed(ssh_lab, 1, "true")[1] == 0


def test_a_link_down_times_out_within_connect_timeout_and_comes_back(ssh_lab: SshLab) -> None:
    ssh_lab.link_down(2)
    seconds, rc, err = timed(ssh_lab, 2, "true")
    assert rc == 255 and seconds < CONNECT_TIMEOUT + 1.5, (seconds, err)
    assert timed(ssh_lab, 0, "true")[1] == 0
    ssh_lab.link_up(2)
    seconds, rc, err = timed(ssh_lab, 2, "true")
    assert rc == 0, err


def test_a_shared_connection_is_reused_and_notices_a_lost_link(ssh_lab: SshLab) -> None:
    """ControlMaster as the transport will use it: the second ssh logs in no more, and with
    ServerAlive 1s x 2 a command running through the master ends (255) within a few seconds
    of its host's link going down. The control socket's directory is short: %C (40 characters)
    and ssh's temporary suffix (17) under pytest's tmp_path pass sun_path's 108 bytes."""
    control = Path(tempfile.mkdtemp(prefix="xt-cm-", dir="/tmp"))
    mux = ("-o", "ControlMaster=auto", "-o", f"ControlPath={control}/%C", "-o", "ControlPersist=30",
           "-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=2")
    h = ssh_lab.hosts[0]
    try:
        logins = h.sshd_log.read_text().count("Accepted publickey")
        first = timed(ssh_lab, 0, "true", options=mux)
        assert first[1] == 0, first
        assert ssh_lab.ssh(0, options=("-O", "check", *mux)).returncode == 0
        again = timed(ssh_lab, 0, "true", options=mux)
        assert again[1] == 0, again
        assert h.sshd_log.read_text().count("Accepted publickey") == logins + 1
        running = subprocess.Popen(ssh_lab.ssh_command(0, "sleep", "60", options=mux),
                                   stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        start = time.monotonic()
        ssh_lab.link_down(0)
        rc = running.wait(15)
        lost = time.monotonic() - start
        assert rc == 255 and lost < 6, (rc, lost)
        print(f"first connect {first[0]:.3f}s, reused {again[0]:.3f}s, link loss noticed in {lost:.2f}s")
    finally:
        ssh_lab.ssh(0, options=("-O", "exit", *mux), timeout=10)
        shutil.rmtree(control, ignore_errors=True)


def _agent_call(lab: SshLab, i: int, call: str, args: dict[str, Any]) -> dict[str, Any]:
    """One call through a fresh `xetool host-agent` on host i (a simulated host's record)."""
    h = lab.hosts[i]
    host = {"uuid": str(uuid.uuid5(uuid.NAMESPACE_DNS, h.namespace)), "name_label": h.name, "backend": "simulator",
            "memory_total": 8 << 30, "dom0_memory": 1 << 30, "cpu_count": 2, "capabilities": "pv", "hostname": h.name}
    request = json.dumps({"id": 1, "call": call, "host": host, "env": {}, "args": args}) + "\n"
    r = lab.ssh(i, lab.agent_command, input=request)
    assert r.returncode == 0, r.stderr
    hello, *events, answer = map(json.loads, r.stdout.splitlines())
    assert "hello" in hello
    return dict(answer)


def test_the_host_agent_greets_through_ssh(ssh_lab: SshLab) -> None:
    h = ssh_lab.hosts[1]
    agent = subprocess.Popen(ssh_lab.ssh_command(1, ssh_lab.agent_command), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert agent.stdin is not None and agent.stdout is not None
    try:
        hello = json.loads(agent.stdout.readline())
        assert hello["hello"]["protocol"] == PROTOCOL
        agent.stdin.write(json.dumps({"id": 1, "call": "hello", "host": {"uuid": str(uuid.uuid4())},
                                             "env": {}, "args": {}}).encode() + b"\n")
        agent.stdin.flush()
        answer = json.loads(agent.stdout.readline())
        assert answer["id"] == 1 and answer.get("result", {}).get("state_dir") == str(h.state_dir), answer
    finally:
        agent.stdin.close()
        rc = agent.wait(15)
    assert rc == 0, agent.stderr.read() if agent.stderr else rc
    assert not [p for p in ssh_lab.processes(1) if "host-agent" in _cmdline(p)]


def test_close_leaves_nothing_behind_and_can_run_twice(ssh_lab: SshLab, tmp_path: Path) -> None:
    """A second lab beside the module's (distinct names and addresses), with a simulated host
    its agent started and left running, a detached process, and a client still trying to
    connect to a host whose link is down."""
    lab = SshLab(2, tmp_path / "lab")
    with lab:
        assert not {h.namespace for h in lab.hosts} & {h.namespace for h in ssh_lab.hosts}
        assert not {h.address for h in lab.hosts} & {h.address for h in ssh_lab.hosts}
        route = lab.block
        assert route in netns.blackholes()
        inventory = _agent_call(lab, 0, "inventory", {"start": True})
        assert inventory["result"]["state"] == "live", inventory
        assert [p for p in lab.processes(0) if "simulator.hostd" in _cmdline(p)]
        assert lab.ssh(1, "setsid sleep 300 </dev/null >/dev/null 2>&1 &").returncode == 0
        left = [p for h in lab.hosts for p in lab.processes(h.index)]
        assert len(left) >= 4  # two sshd, the simulated host, the sleep
        lab.link_down(1)
        trying = subprocess.Popen(lab.ssh_command(1, "true", options=("-o", "ConnectTimeout=60")),
                                  stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)
    assert trying.wait(10) == 255
    names = [h.namespace for h in lab.hosts]
    assert not set(names) & set(netns.namespaces())
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert not [n for n in names if f" {n}:" in links or f" {n}@" in links]
    assert not [p for p in left if alive(p)]
    assert not lab.workdir.exists()
    assert route not in netns.blackholes()
    assert not subprocess.run(["ss", "-Htn", "dst", str(route)], capture_output=True, text=True).stdout
    lab.close()  # again: nothing to do
    assert ssh_lab.ssh(0, "true").returncode == 0  # the module's lab is untouched


def test_a_setup_failing_half_way_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    netns.skip_unless_a_lab_can_run()
    before = set(netns.namespaces()), set(netns.blackholes())
    monkeypatch.setattr(netns, "SSHD", "/bin/false")  # sshd "exits" at once: no host comes up
    lab = SshLab(2, tmp_path / "lab")
    with pytest.raises(netns.LabError, match="exited"):
        lab.setup()
    assert (set(netns.namespaces()), set(netns.blackholes())) == before
    assert not lab.workdir.exists()
    lab.close()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_the_agent_command_is_this_interpreter(ssh_lab: SshLab) -> None:
    assert ssh_lab.agent_command.split()[0] == sys.executable
    r = ssh_lab.ssh(0, *ssh_lab.agent_command.split()[:3], "--version")
    assert r.returncode == 0 and r.stdout.startswith("xetool "), r.stderr


def test_the_control_directory_leaves_room_for_the_sockets_ssh_binds(tmp_path: Path) -> None:
    """ssh binds <dir>/<%C: 40 hex digits>.<16 characters> before renaming it: that path must fit
    a socket's 107 bytes, or ssh fails (unix_listener: too long for Unix domain socket)."""
    from xetool.master.ssh import control_dir

    for n in range(1, 90):
        state = Path("/" + "s" * n)
        d = control_dir(state)
        assert len(str(d)) + 1 + 40 + 1 + 16 <= 107, (n, d)
        assert (d == state / "ssh") == (len(str(state / "ssh")) <= 49)
