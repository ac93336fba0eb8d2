"""`xetool host-agent` (issue 12): the host half as a process of its own, driven over a pair of
pipes as ssh would carry it: the greeting and its protocol version, a start streamed step by
step, the rest of the lifecycle, a lost connection in the middle of a start."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import Pool, cli_env

from xetool.errors import XeError
from xetool.host.calls import PROTOCOL
from xetool.master import host_half, resync
from xetool.master.vm_start import MasterStart, StartRequest


class Agent:
    """An agent process on the pool's state directory (the master's and the hosts' share a
    machine here), with the master's end of its pipes."""

    def __init__(self, p: Pool) -> None:
        env = cli_env(p.state_dir)
        self.proc = subprocess.Popen([sys.executable, "-m", "xetool", "host-agent"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env)

    def transport(self, host: str) -> host_half.Stream:
        return host_half.Stream(host, self.proc.stdout, self.proc.stdin)

    def close(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        rc = self.proc.wait(10)
        self.proc.stdout.close()
        return rc


@pytest.fixture
def agent(pool: Pool):  # type: ignore[no-untyped-def]
    a = Agent(pool)
    yield a
    a.close()


def _host(p: Pool, name: str) -> dict:
    from xetool.host.backend import HOST_FIELDS

    uuid = p.uuid("host", name)
    with p.store.read() as txn:
        return txn.must("host", uuid, HOST_FIELDS)


class Steps:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def step_started(self, index: int, total: int, name: str) -> None:
        self.seen.append(name)

    def step_done(self, name: str, seconds: float, note: object) -> None:
        pass

    def step_failed(self, name: str, seconds: float, error: BaseException) -> None:
        self.seen.append(f"failed {name}")

    def step_undone(self, name: str, error: BaseException | None) -> None:
        self.seen.append(f"undo {name}")


def test_greeting_and_a_start_streamed_through_the_agent(pool: Pool, agent: Agent) -> None:
    resync.forget_touches()
    host = _host(pool, "host2")
    transport = agent.transport(host["uuid"])
    assert transport.greet()["protocol"] == PROTOCOL
    steps = Steps()
    vm = pool.uuid("vm", "web01")
    hosts = host_half.Hosts(pool.store, pool.state_dir, steps, connect=lambda row: transport)
    MasterStart(pool.store, pool.state_dir, StartRequest(vm, on=host["uuid"]), hosts, steps).run()
    pool.assert_running_clean(vm)
    assert pool.vm("web01")["resident_on"] == host["uuid"]
    # the host's steps arrived as they ran, between the master's
    assert steps.seen.index("execute_on_host") < steps.seen.index("acquire_host_queue") < steps.seen.index("unpause") \
        < steps.seen.index("remove_host_operation")
    c = host_half.HostClient(pool.store, pool.state_dir, host, transport=transport)
    assert c.call("vm_set_paused", vm=vm, paused=True)["domid"] == pool.vm("web01")["domid"]
    assert c.call("vm_set_paused", vm=vm, paused=False)["domid"] == pool.vm("web01")["domid"]
    with pytest.raises(XeError) as err:  # a registry error crosses the pipe as itself
        c.call("vbd_unplug", vm="no-such-vm", vbd="x", userdevice=3, force=True)
    assert err.value.code == "VM_BAD_POWER_STATE"
    assert c.call("vm_shutdown", vm=vm, clean=False, timeout=5, reason="poweroff")["problems"] == []
    host_half.halt_in_store(pool.store, vm)
    pool.assert_halted_clean(vm)
    assert agent.close() == 0


def test_an_agent_of_another_protocol_is_refused_naming_both(pool: Pool) -> None:
    fake = subprocess.Popen([sys.executable, "-c", 'print(\'{"hello": {"protocol": 99, "xetool": "9"}}\', flush=True)'],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        c = host_half.HostClient(pool.store, pool.state_dir, _host(pool, "host1"),
                                 transport=host_half.Stream("host1", fake.stdout, fake.stdin))
        with pytest.raises(XeError) as err:
            c.call("hello")
        assert err.value.code == "HOST_AGENT_PROTOCOL_MISMATCH"
        assert (err.value.params["ours"], err.value.params["theirs"]) == (str(PROTOCOL), "99")
    finally:
        fake.stdin.close()  # type: ignore[union-attr]
        fake.wait(5)
        fake.stdout.close()  # type: ignore[union-attr]


def test_a_bad_line_is_answered_and_the_agent_goes_on(agent: Agent) -> None:
    assert agent.proc.stdin is not None and agent.proc.stdout is not None
    assert b'"hello"' in agent.proc.stdout.readline()
    agent.proc.stdin.write(b"this is not json\n")
    agent.proc.stdin.flush()
    assert b'"INTERNAL_ERROR"' in agent.proc.stdout.readline()
    agent.proc.stdin.write(b'{"id": 3, "call": "nope", "host": {"uuid": "h"}, "args": {}}\n')
    agent.proc.stdin.flush()
    assert b'"MESSAGE_METHOD_UNKNOWN"' in agent.proc.stdout.readline()


@pytest.mark.parametrize("step", ["create_vifs", "unlock_vm"])
def test_the_connection_lost_during_a_start_then_the_next_command_settles_the_host(
        pool: Pool, step: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent dies at a step of the start (the connection is gone with it): the command
    fails clearly and releases the master's marks; the next command that reaches the host
    resyncs it, and the VM ends Running there or Halted with nothing left, never both. The
    fault reaches the agent in the request (its own environment has none)."""
    resync.forget_touches()
    host = _host(pool, "host1")
    dying = Agent(pool)
    monkeypatch.setenv("XETOOL_FIST", f"{step}:kill")
    vm = pool.uuid("vm", "web01")
    hosts = host_half.Hosts(pool.store, pool.state_dir, connect=lambda row: dying.transport(row["uuid"]))
    with pytest.raises(XeError) as err:
        MasterStart(pool.store, pool.state_dir, StartRequest(vm, on=host["uuid"]), hosts).run()
    assert err.value.code == "HOST_AGENT_CONNECTION_LOST" and err.value.params["host"] == host["uuid"]
    assert dying.close() == -9
    pool.assert_no_marks()
    row = pool.vm("web01")
    assert row["power_state"] == "Halted" and row["scheduled_to_be_resident_on"] is None
    pool.xe("pool-check", "--repair")  # the next command to reach the host
    row = pool.vm("web01")
    if step == "unlock_vm":  # the start had finished there: the VM runs, as the host says
        pool.assert_running_clean(vm)
        pool.xe("vm-shutdown", "vm=web01", "--force")
    pool.assert_halted_clean(vm)
    pool.xe("vm-start", "vm=web01")
    pool.assert_running_clean(vm)
    pool.xe("vm-shutdown", "vm=web01", "--force")
    pool.assert_halted_clean(vm)


def test_the_long_running_agent_listens_serves_forks_and_stops(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """host-agent --listen starts it once (a second --listen finds it), each connection is served
    by a fork of it (the same protocol, a start-up already paid), and --stop ends it."""
    import json
    import os
    import socket
    import time

    state = tmp_path / "host"
    state.mkdir(mode=0o700)
    env = {**cli_env(state), "XETOOL_STATE_DIR": str(state)}

    def agent(*flags: str) -> str:
        r = subprocess.run([sys.executable, "-m", "xetool", "host-agent", *flags], capture_output=True, text=True,
                           env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    first = json.loads(agent("--listen"))
    try:
        assert first["protocol"] == PROTOCOL and os.stat(first["socket"]).st_mode & 0o777 == 0o600
        assert json.loads(agent("--listen"))["pid"] == first["pid"]  # found running, not started again
        for _ in range(2):
            began = time.monotonic()
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(first["socket"])
                f = s.makefile("rwb", buffering=0)
                hello = json.loads(f.readline())["hello"]
                f.write(json.dumps({"id": 7, "call": "hello", "host": {"uuid": "h"}, "env": {}, "args": {}}).encode() + b"\n")
                answer = json.loads(f.readline())
            assert hello["pid"] == first["pid"] and answer["result"]["state_dir"] == str(state)
            assert time.monotonic() - began < 1.0  # a fork of a loaded agent, no interpreter start-up
    finally:
        assert agent("--stop") == f"Stopped the long-running agent (pid {first['pid']})."
    assert agent("--stop") == "No long-running agent runs here."
    assert not os.path.exists(first["socket"])


def test_a_long_running_agent_makes_way_for_new_code(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The host's xetool replaced under a running agent (an upgrade, an edit): the connection in
    hand is still served, by the code it reached; the agent then stops listening, and the next
    --listen starts the new code."""
    import json
    import os
    import shutil
    import socket
    import time

    from xetool.host import agent as agent_module

    code = tmp_path / "code"
    shutil.copytree(agent_module.__file__.rsplit("/host/", 1)[0], code / "xetool",
                    ignore=shutil.ignore_patterns("__pycache__"))
    state = tmp_path / "host"
    state.mkdir(mode=0o700)
    env = {**cli_env(state), "PYTHONPATH": str(code)}

    def agent(*flags: str) -> dict:
        r = subprocess.run([sys.executable, "-m", "xetool", "host-agent", *flags], capture_output=True, text=True,
                           env=env, timeout=60, cwd=tmp_path)  # (-m looks in the working directory first)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout) if flags == ("--listen",) else {"said": r.stdout.strip()}

    def hello_and_answer(path: str) -> tuple[dict, dict]:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(path)
            f = s.makefile("rwb")
            hello = json.loads(f.readline())["hello"]
            f.write(json.dumps({"id": 1, "call": "hello", "host": {"uuid": "h"}, "env": {}, "args": {}}).encode() + b"\n")
            f.flush()
            return hello, json.loads(f.readline())

    first = agent("--listen")
    try:
        assert first["pid"] and os.path.samefile(agent("--listen")["socket"], first["socket"])
        module = code / "xetool" / "units.py"
        os.utime(module, ns=(module.stat().st_atime_ns, module.stat().st_mtime_ns + 10**9))
        old, answer = hello_and_answer(first["socket"])
        assert old["pid"] == first["pid"] and answer["result"]["state_dir"] == str(state)
        deadline = time.monotonic() + 20
        while os.path.exists(first["socket"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not os.path.exists(first["socket"]), "the agent of the old code still listens"
        second = agent("--listen")
        assert second["pid"] != first["pid"]
        new, _ = hello_and_answer(second["socket"])
        assert new["pid"] == second["pid"] and new["code"] != old["code"]
    finally:
        agent("--stop")
    assert agent("--stop")["said"] == "No long-running agent runs here."
