"""Fixtures for the lifecycle tests: a state directory with an imported pool, the real `xetool`
CLI run as a subprocess, the real simulator, the real SQLite store; every simulated host and
every stand-in process stopped at the end (a test that leaks a process fails in teardown).

`Pool.assert_consistent(vm)` is the one definition of "the pool is left consistent" used by the
failure, crash and load tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "pool.toml"
CLI_TIMEOUT = 60.0
PYCACHE = Path(os.environ.get("TMPDIR", "/tmp")) / "xetool-test-pycache"


def cli_env(state_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # Byte-code caching (kept outside the tree): without it every command recompiles xetool.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["XETOOL_STATE_DIR"] = str(state_dir)
    for key in ("XETOOL_FIST", "XETOOL_PLACEMENT_SEED"):
        env.pop(key, None)
    env.update(extra)
    return env


def proc_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def proc_name(pid: int) -> str:
    """The process's name (comm): forked stand-ins are named qemu-dm-N or vncterm-N."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def proc_running(pid: int) -> bool:
    """Alive and not a zombie (an unreaped dead process is gone for our purposes)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def processes_under(state_dir: Path) -> dict[int, str]:
    """Every live process whose command line names the state directory (hosts, stand-ins)."""
    out = {}
    key = str(state_dir)
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            cmd = proc_cmdline(int(entry))
            if key in cmd and proc_running(int(entry)):
                out[int(entry)] = cmd
    return out


def stand_ins(state_dir: Path) -> dict[int, str]:
    """Device model and console server processes: everything under the state dir but the hosts."""
    return {p: c for p, c in processes_under(state_dir).items()
            if "simulator.hostd" not in c or proc_name(p).startswith(("qemu-dm", "vncterm"))}


class Pool:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.env = cli_env(state_dir)
        self._store = None

    # --- the CLI -----------------------------------------------------------------------------
    def run(self, *args: str, fist: str | None = None, timeout: float = CLI_TIMEOUT,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        e = dict(env or self.env)
        if fist:
            e["XETOOL_FIST"] = fist
        return subprocess.run([sys.executable, "-m", "xetool", *args], env=e, cwd=ROOT, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def xe(self, *args: str, **kw: object) -> str:
        """Run a command that must succeed; its stdout."""
        out = self.run(*args, **kw)  # type: ignore[arg-type]
        assert out.returncode == 0, f"xetool {' '.join(args)} -> {out.returncode}\n{out.stdout}\n{out.stderr}"
        assert "Traceback" not in out.stderr
        return out.stdout

    def fails(self, *args: str, code: str, status: int = 1, **kw: object) -> dict[str, str]:
        """Run a command that must fail with registry error `code`: exit `status`, no traceback,
        the entry's sentence on stderr, then one `name: value` line per parameter; returns them."""
        from xetool.errors import REGISTRY

        out = self.run(*args, **kw)  # type: ignore[arg-type]
        assert out.returncode == status, f"{args}: {out.returncode}\n{out.stdout}\n{out.stderr}"
        assert "Traceback" not in out.stderr and "INTERNAL_ERROR" not in out.stderr, out.stderr
        spec = REGISTRY[code]
        lines = out.stderr.splitlines()
        assert spec.doc in lines, f"expected {code}:\n{out.stderr}"
        at = len(lines) - 1 - lines[::-1].index(spec.doc)
        params = dict(line.split(": ", 1) for line in lines[at + 1:at + 1 + len(spec.params)])
        assert list(params) == list(spec.params), out.stderr
        return params

    # --- the store ---------------------------------------------------------------------------
    @property
    def store(self):  # type: ignore[no-untyped-def]
        from xetool.store.db import Store

        if self._store is None:
            self._store = Store(self.state_dir)
        return self._store

    def uuid(self, cls: str, name: str) -> str:
        with self.store.read() as txn:
            rows = txn.select(cls, ["uuid"], {"name_label": name})
        assert len(rows) == 1, (cls, name, rows)
        return rows[0]["uuid"]

    def row(self, cls: str, uuid: str) -> dict:
        with self.store.read() as txn:
            return txn.must(cls, uuid)

    def vm(self, name: str) -> dict:
        return self.row("vm", self.uuid("vm", name))

    def devices(self, cls: str, vm: str) -> list[dict]:
        with self.store.read() as txn:
            return txn.select(cls, None, {"VM": vm})

    def hosts(self) -> list[dict]:
        from xetool.host.backend import HOST_FIELDS

        with self.store.read() as txn:
            return txn.select("host", list(HOST_FIELDS) + ["live", "enabled", "current_operations"])

    def backend(self, host: str):  # type: ignore[no-untyped-def]
        from xetool.host.backend import HOST_FIELDS, backend_for

        with self.store.read() as txn:
            return backend_for(self.state_dir, txn.must("host", host, HOST_FIELDS))

    def domains(self, vm: str | None = None) -> list[tuple[str, object]]:
        """(host, DomainInfo) of every guest domain on every live simulated host (never starts one)."""
        out = []
        for h in self.hosts():
            b = self.backend(h["uuid"])
            if b.is_live():
                out += [(h["uuid"], d) for d in b.list_domains() if d.domid != 0 and (vm is None or d.uuid == vm)]
        return out

    def dump(self) -> dict[str, list]:
        """Every table of the store, for before/after comparisons."""
        with self.store.read() as txn:
            names = [r[0] for r in txn.db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
            return {n: sorted(map(repr, txn.db.execute(f"SELECT * FROM {n}").fetchall())) for n in names}

    def reservations(self) -> list[tuple]:
        with self.store.read() as txn:
            return txn.db.execute("SELECT id, host, vm, task, kib, domid FROM reservation").fetchall()

    def leases(self) -> list[str]:
        return [line for f in self.state_dir.glob("hosts/*/dnsmasq/*.hosts") for line in f.read_text().splitlines()]

    def runtime_files(self, vm: str | None = None) -> list[Path]:
        return list(self.state_dir.glob(f"hosts/*/run/{vm or '*'}.json"))

    # --- the invariants ----------------------------------------------------------------------
    def assert_no_marks(self) -> None:
        with self.store.read() as txn:
            for cls in ("vm", "vbd", "vif", "host", "vdi"):
                for r in txn.select(cls, ["uuid", "current_operations"]):
                    assert r["current_operations"] == {}, (cls, r)
            pending = txn.select("task", ["uuid", "name_label", "current_step"], {"status": "pending"})
            assert pending == [], pending

    def assert_halted_clean(self, vm: str) -> None:
        """The VM holds nothing anywhere: the failure/crash tests' definition of consistent."""
        self.assert_no_marks()
        row = self.row("vm", vm)
        assert row["power_state"] == "Halted", row["power_state"]
        assert row["resident_on"] is None and row["scheduled_to_be_resident_on"] is None
        assert row["domid"] == -1
        assert self.domains(vm) == []
        assert [r for r in self.reservations() if r[2] == vm] == []
        assert self.runtime_files(vm) == []
        macs = {v["MAC"] for v in self.devices("vif", vm)}
        assert [line for line in self.leases() if line.split(",")[0] in macs] == []
        for cls in ("vbd", "vif"):
            assert not any(d["currently_attached"] for d in self.devices(cls, vm)), cls

    def assert_running_clean(self, vm: str) -> None:
        self.assert_no_marks()
        row = self.row("vm", vm)
        assert row["power_state"] == "Running"
        assert row["resident_on"] and row["scheduled_to_be_resident_on"] is None and row["domid"] > 0
        doms = self.domains(vm)
        assert [(h, d.domid) for h, d in doms] == [(row["resident_on"], row["domid"])]
        assert [r for r in self.reservations() if r[2] == vm] == []  # handed to the domain

    # --- clean-up ----------------------------------------------------------------------------
    def stop_everything(self) -> list[str]:
        """Stop every simulated host and every stand-in; returns the stand-ins that were left
        running although no VM was recorded as holding them (leaks)."""
        from xetool.backends import simulator
        from xetool.host import runtime

        held = set()
        for f in self.runtime_files():
            rt = runtime.load(self.state_dir, f.parent.parent.name, f.stem)
            if rt:
                held |= {rt.dm_pid, rt.console_pid}
        leaked = [f"{p}: {c}" for p, c in stand_ins(self.state_dir).items() if p not in held]
        try:
            for h in self.hosts():
                simulator.stop_host(self.state_dir, h["uuid"])
        except Exception:  # a broken store must not keep processes alive
            pass
        for d in (self.state_dir / "hosts").glob("*") if (self.state_dir / "hosts").exists() else []:
            simulator.stop_host(self.state_dir, d.name)
        deadline = time.monotonic() + 5
        while True:
            rest = processes_under(self.state_dir)
            if not rest or time.monotonic() > deadline:
                break
            for pid in rest:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        if self._store is not None:
            self._store.close()
            self._store = None
        return leaked


def make_pool(state_dir: Path, toml: Path | str = EXAMPLE) -> Pool:
    pool = Pool(state_dir)
    if isinstance(toml, str):
        path = state_dir.parent / f"{state_dir.name}-pool.toml"
        path.write_text(toml)
        toml = path
    pool.xe("pool-import", f"file={toml}")
    return pool


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[Pool]:
    """The example pool (3 hosts, web01/db01/win01), fresh per test."""
    p = make_pool(tmp_path / "state")
    yield p
    leaked = p.stop_everything()
    assert leaked == [], f"stand-in processes left running with no VM holding them: {leaked}"


@pytest.fixture(scope="module")
def shared_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    """One example pool for a module of parametrized cases; each case must leave it consistent."""
    p = make_pool(tmp_path_factory.mktemp("shared") / "state")
    yield p
    leaked = p.stop_everything()
    assert leaked == [], f"stand-in processes left running with no VM holding them: {leaked}"
