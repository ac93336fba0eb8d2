"""The master's side of the host half: a client per host that sends the calls of host/calls.py,
the requests built from the store, and the answers recorded into it.

Every command that touches a host goes through `client()`. A host in this process is reached by
dispatching the request here, after a round trip of the request, each event and the answer
through JSON, so that every test of the lifecycle exercises the wire format a remote agent
speaks. The host never writes the store: its answers and events (memory reports with the
reservation change that made them) are recorded here.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from xetool import lifecycle
from xetool.clock import now_iso
from xetool.errors import XeError
from xetool.host.calls import CALLS, error_from
from xetool.store.db import Row, Store, Txn

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from xetool.steps import Observer


class InProcess:
    """The transport to a host whose half runs in this process: the request, each event and the
    answer go through JSON text all the same."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    def exchange(self, text: str, on_event: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        from xetool.host.calls import dispatch

        def emit(event: dict[str, Any]) -> None:
            on_event(json.loads(json.dumps(event)))

        answer: dict[str, Any] = json.loads(json.dumps(dispatch(self.state_dir, json.loads(text), emit)))
        return answer


class Stream:
    """The transport to an agent (`xetool host-agent`) at the other end of a pair of pipes: one
    JSON message a line. The agent greets first with its protocol version; another version is
    refused, naming both. The pipe closing in the middle of a call is HOST_AGENT_CONNECTION_LOST
    (the call may have run there: the host's next resync tells)."""

    def __init__(self, host: str, reader: Any, writer: Any) -> None:
        self.host, self.reader, self.writer = host, reader, writer
        self.hello: dict[str, Any] | None = None

    def _line(self) -> dict[str, Any] | None:
        line = self.reader.readline()
        if not line:
            return None
        try:
            msg = json.loads(line)
        except ValueError:
            raise XeError("HOST_AGENT_CONNECTION_LOST", self.host, f"not a message of the protocol: {line[:200]!r}") from None
        if not isinstance(msg, dict):
            raise XeError("HOST_AGENT_CONNECTION_LOST", self.host, f"not a message of the protocol: {line[:200]!r}")
        return msg

    def greet(self) -> dict[str, Any]:
        from xetool.host.calls import PROTOCOL

        if self.hello is None:
            self.hello = self._greeting()
            if self.hello.get("protocol") != PROTOCOL:
                raise XeError("HOST_AGENT_PROTOCOL_MISMATCH", self.host, PROTOCOL, self.hello.get("protocol"))
        return self.hello

    def _greeting(self) -> dict[str, Any]:
        """The agent's hello, past what a login shell may print before it (a banner, a
        message of the day): noise before the greeting is skipped, within bounds."""
        noise: list[bytes] = []
        while len(noise) < 100:
            line = self.reader.readline()
            if not line:
                break
            try:
                msg = json.loads(line)
            except ValueError:
                msg = None
            if isinstance(msg, dict) and isinstance(msg.get("hello"), dict):
                hello: dict[str, Any] = msg["hello"]
                return hello
            noise.append(line.strip())
        said = f"; before it: {b' / '.join(noise[-3:])[:300]!r}" if noise else ""
        raise self.lost("it closed the connection before greeting" + said)

    def lost(self, reason: str) -> XeError:
        return XeError("HOST_AGENT_CONNECTION_LOST", self.host, reason)

    def exchange(self, text: str, on_event: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        self.greet()
        ident = json.loads(text)["id"]
        try:
            self.writer.write(text.encode() + b"\n")
            self.writer.flush()
        except OSError as err:
            raise self.lost(f"sending the request: {err.strerror or err}") from None
        while True:
            msg = self._line()
            if msg is None:
                raise self.lost("the connection closed before the answer")
            if msg.get("id") != ident:
                continue  # an answer to a request abandoned earlier
            if "event" in msg:
                on_event(msg)
            elif "result" in msg or "error" in msg:
                return msg


class HostClient:
    """One host, reached through a transport: this process, or an agent's pipes."""

    def __init__(self, store: Store, state_dir: Path, host: Row, observer: Observer | None = None,
                 transport: InProcess | Stream | None = None) -> None:
        from xetool.host.backend import HOST_FIELDS

        self.store, self.state_dir, self.observer = store, state_dir, observer
        self.host = {k: host[k] for k in HOST_FIELDS if k in host}
        self.uuid: str = host["uuid"]
        self.transport = transport  # else reached at the first call (transport_for)

    def request(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        return request(next(_ids), self.host, name, args)

    def call(self, name: str, **args: Any) -> dict[str, Any]:
        request = self.request(name, args)
        try:
            if self.transport is None:
                self.transport = transport_for(self.store, self.state_dir, self.host)
            answer = self.transport.exchange(json.dumps(request), self.event)
        except XeError as err:
            if err.code == "HOST_AGENT_CONNECTION_LOST":  # what it did there: the next touch resyncs it
                from xetool.master import resync

                resync.forget_touch(str(self.state_dir), self.uuid)
            elif err.code == "HOST_OFFLINE":  # unreachable: placement passes it by until it answers
                with self.store.write() as txn:
                    row = txn.get("host", self.uuid, ["live"])
                    if row is not None and row["live"]:
                        txn.update("host", self.uuid, {"live": False})
            raise
        if "error" in answer:
            raise error_from(answer["error"])
        result: dict[str, Any] = answer["result"]
        return result

    def event(self, ev: dict[str, Any]) -> None:
        """One event of the running request, as it arrives."""
        kind = ev.get("event")
        if kind == "memory":
            record_memory(self.store, self.uuid, ev)
        elif self.observer is not None:
            try:
                self._show(kind, ev)
            except Exception:  # nosec: a display that broke (a closed pipe) must not stop the call
                pass

    def _show(self, kind: object, ev: dict[str, Any]) -> None:
        assert self.observer is not None
        if kind == "step":
            self.observer.step_started(int(ev["index"]), int(ev["total"]), str(ev["name"]))
        elif kind == "done":
            self.observer.step_done(str(ev["name"]), float(ev["seconds"]), ev.get("note"))
        elif kind == "failed":
            self.observer.step_failed(str(ev["name"]), float(ev["seconds"]), error_from(ev["error"]))
        elif kind == "undo":
            self.observer.step_undone(str(ev["name"]), error_from(ev["error"]) if ev.get("error") else None)


def transport_for(store: Store, state_dir: Path, host: Row) -> InProcess | Stream:
    """This process for a host on this machine; its agent over SSH for a host with an address."""
    from xetool.master import ssh

    if not ssh.is_remote(host):
        return InProcess(state_dir)
    with store.read() as txn:
        pool = txn.pool()
    return ssh.transport(state_dir, host, pool["ssh_config"], pool["ssh_identity"])


# one sequence for the process: clients share a host's connection, and an answer to a request
# given up earlier (an interrupted call) must never pass for a later one's
_ids = itertools.count(1)


def request(ident: int, host: dict[str, Any], name: str, args: dict[str, Any]) -> dict[str, Any]:
    from xetool.host import env

    call = CALLS[name]
    missing = [a for a in call.args if a not in args]
    assert not missing, (name, missing)  # a bug on the master: never sent
    return {"id": ident, "call": name, "host": host, "env": env.from_master(), "args": args}


def call_plain(state_dir: Path, host: Row, ssh_config: str, ssh_identity: str, name: str,
               args: dict[str, Any]) -> dict[str, Any]:
    """A call to a remote host from inside a transaction of the store (a disk made for a
    pool-import): its answer only, no event recorded and nothing written to the store."""
    from xetool.host.backend import HOST_FIELDS
    from xetool.master import ssh

    t = ssh.transport(state_dir, host, ssh_config, ssh_identity)
    answer = t.exchange(json.dumps(request(next(_ids), {k: host[k] for k in HOST_FIELDS if k in host}, name, args)),
                        lambda ev: None)
    if "error" in answer:
        raise error_from(answer["error"])
    result: dict[str, Any] = answer["result"]
    return result


def client(store: Store, state_dir: Path, host: Row, observer: Observer | None = None) -> HostClient:
    return HostClient(store, state_dir, host, observer)


def client_for(store: Store, state_dir: Path, host_uuid: str, observer: Observer | None = None) -> HostClient:
    from xetool.host.backend import HOST_FIELDS

    with store.read() as txn:
        row = txn.must("host", host_uuid, HOST_FIELDS)
    return client(store, state_dir, row, observer)


# --- memory reports ---------------------------------------------------------------------------------------

def record_memory(store: Store, host: str, ev: dict[str, Any]) -> None:
    """A host's memory report: the reservation change that came with it, and (unless a later
    report is already recorded) the host's figures and its guests' allocations and targets."""
    with store.write() as txn:
        change = ev.get("change") or {}
        db = txn.db
        if "add" in change:
            r = change["add"]
            db.execute("INSERT OR REPLACE INTO reservation (id, host, vm, task, kib, domid, created)"
                       " VALUES (?, ?, ?, ?, ?, -1, strftime('%s','now'))", (r["id"], host, r["vm"], r["task"], int(r["kib"])))
        if "transfer" in change:
            db.execute("UPDATE reservation SET domid = ? WHERE id = ?", (int(change["transfer"]["domid"]), change["transfer"]["id"]))
        if change.get("release"):
            db.executemany("DELETE FROM reservation WHERE id = ?", [(rid,) for rid in change["release"]])
        if "seq" not in ev:
            return
        last = db.execute("SELECT epoch, seq FROM host_memory_report WHERE host = ?", (host,)).fetchone()
        if last is not None and last[0] == ev["epoch"] and int(last[1]) >= int(ev["seq"]):
            return  # an older report than one recorded: it arrived late
        db.execute("INSERT OR REPLACE INTO host_memory_report (host, epoch, seq) VALUES (?, ?, ?)",
                   (host, ev["epoch"], int(ev["seq"])))
        db.execute("UPDATE host SET memory_free = ?, memory_free_computed = ? WHERE uuid = ?",
                   (int(ev["free_kib"]) * 1024, int(ev["available_kib"]) * 1024, host))
        guests = ev.get("guests") or {}
        for uuid, metrics, target in db.execute(
                "SELECT uuid, metrics, memory_target FROM vm WHERE resident_on = ?", (host,)).fetchall():
            g = guests.get(uuid)
            if g is None:
                continue
            actual, tgt = int(g[0]) * 1024, int(g[1]) * 1024
            if target != tgt:
                db.execute("UPDATE vm SET memory_target = ? WHERE uuid = ?", (tgt, uuid))
            if metrics:
                db.execute("UPDATE vm_metrics SET memory_actual = ? WHERE uuid = ? AND memory_actual != ?",
                           (actual, metrics, actual))


# --- vm-start ---------------------------------------------------------------------------------------------

def start_request(store: Store, vm: str, task: str, paused: bool, force: bool) -> dict[str, Any]:
    """Everything the host half needs to start the VM, from the store (xapi's create_metadata):
    the VM and its boot record, the VBDs the start marked with their disks' paths, the VIFs it
    marked with their bridges, the NICs of a device model, the overhead, the task."""
    from xetool.master.snapshot import is_hvm

    with store.read() as txn:
        row = txn.must("vm", vm)
        text = row.pop("last_booted_record")
        vbds = txn.select("vbd", None, {"VM": vm})
        disks = [disk_request(txn, v) for v in vbds if task in v["current_operations"]]
        vifs = [vif_request(txn, v) for v in sorted(txn.select("vif", None, {"VM": vm}), key=lambda v: int(v["device"]))]
        marked = {v["uuid"] for v in txn.select("vif", ["uuid", "current_operations"], {"VM": vm}) if task in v["current_operations"]}
    return {
        "vm": vm, "record": row, "task": task, "paused": paused, "force": force, "hvm": is_hvm(row),
        "boot_record": json.loads(text) if text else None, "overhead": row["memory_overhead"],
        "userdevices": [v["userdevice"] for v in vbds], "disks": disks,
        "vifs": [v for v in vifs if v["uuid"] in marked], "dm_nics": [[v["mac"], v["bridge"]] for v in vifs],
    }


def vif_request(txn: Txn, v: Row) -> dict[str, Any]:
    """A VIF as the host needs it: its MAC and MTU, its network's bridge, and whether that is
    the guest installer network (a DHCP lease on the host)."""
    net = txn.must("network", v["network"], ["bridge", "other_config"])
    return {"uuid": v["uuid"], "device": int(v["device"]), "mac": v["MAC"], "mtu": v["MTU"], "bridge": net["bridge"],
            "guest_installer": net["other_config"].get("is_guest_installer_network") == "true"}


def disk_request(txn: Txn, v: Row) -> dict[str, Any]:
    """A VBD as the host needs it: the disk's SR directory and file (the SR is mounted at the
    same path on every host that sees it), or no VDI (an empty CD drive)."""
    from xetool.store.objects import sr_path

    out = {k: v[k] for k in ("uuid", "userdevice", "mode", "type", "bootable", "unpluggable")}
    out.update(vdi=v["VDI"] or "", vdi_exists=False, sr="", sr_path="", location="", path="", other_config={})
    vdi = txn.get("vdi", v["VDI"]) if v["VDI"] else None
    if vdi is not None:
        base = sr_path(txn, vdi["SR"])
        out.update(vdi_exists=True, sr=vdi["SR"], sr_path=base, location=vdi["location"],
                   path=str(Path(base) / vdi["location"]), other_config=vdi["other_config"])
    return out


def record_start(store: Store, vm: str, host: str, answer: dict[str, Any]) -> None:
    """What the host half did, into the store in one transaction: the seed's set_domid,
    clear_device_status, the VBDs' device names, set_start_time, set_boot_record,
    delete_guest_metrics, set_resident_on (clearing scheduled_to_be_resident_on) and the power
    state, and the host's reservation (handed to the domain) forgotten."""
    with store.write() as txn:
        row = txn.must("vm", vm, ["metrics"])
        values: dict[str, Any] = {"domid": answer["domid"], "resident_on": host, "scheduled_to_be_resident_on": None,
                                  "power_state": answer["power_state"], "memory_target": answer["memory_actual"],
                                  "last_booted_record": json.dumps(answer["boot_record"], sort_keys=True),
                                  "guest_metrics": None}
        if answer.get("bios_strings"):
            values["bios_strings"] = answer["bios_strings"]
        if answer.get("ha_always_run"):
            values["ha_always_run"] = True
        for cls, attached in (("vbd", set(answer["attached_vbds"])), ("vif", set(answer["attached_vifs"]))):
            for uuid in txn.uuids(cls, {"VM": vm}):
                more = {"device": answer["devices"][uuid]} if uuid in answer["devices"] else {}
                txn.update(cls, uuid, {"currently_attached": uuid in attached, "status_code": 0, "status_detail": "", **more})
        now = now_iso()
        metrics = {"start_time": answer["start_time"], "last_updated": now, "VCPUs_number": answer["vcpus"],
                   "memory_actual": answer["memory_actual"]}
        if row["metrics"] and txn.get("vm_metrics", row["metrics"], ["uuid"]):
            txn.update("vm_metrics", row["metrics"], metrics)
        else:
            values["metrics"] = txn.insert("vm_metrics", {"VM": vm, **metrics})
        for uuid in txn.uuids("vm_guest_metrics", {"VM": vm}):
            txn.delete("vm_guest_metrics", uuid)
        txn.update("vm", vm, values)
        txn.db.execute("DELETE FROM reservation WHERE vm = ? AND domid >= 0", (vm,))
        lifecycle.update_allowed_operations(txn, "vm", vm)


def halt_in_store(store: Store, vm: str) -> None:
    """The store's side of a halted VM (xapi's force_state_reset); the host has released what
    the VM held there, its reservations too."""
    with store.write() as txn:
        if txn.get("vm", vm, ["uuid"]) is None:
            return
        txn.update("vm", vm, {"power_state": "Halted", "resident_on": None, "scheduled_to_be_resident_on": None,
                              "domid": -1, "memory_target": 0})
        for cls in ("vbd", "vif"):
            for uuid in txn.uuids(cls, {"VM": vm}):
                txn.update(cls, uuid, {"currently_attached": False})
        for m in txn.uuids("vm_metrics", {"VM": vm}):
            txn.update("vm_metrics", m, {"memory_actual": 0, "VCPUs_number": 0})
        txn.db.execute("DELETE FROM reservation WHERE vm = ? AND domid >= 0", (vm,))
        lifecycle.update_allowed_operations(txn, "vm", vm)


def release_vm(store: Store, state_dir: Path, host: Row, vm: str) -> list[str]:
    """Everything the VM holds on its host released, then the VM Halted in the store. A host
    that does not answer keeps what it holds (its next resync releases it)."""
    problems: list[str] = []
    try:
        problems = client(store, state_dir, host).call("vm_release", vm=vm, nowait=False, domid=-1)["problems"]
    except XeError as err:
        if err.code != "HOST_OFFLINE":
            raise
        problems.append(err.render().replace("\n", "; "))
    halt_in_store(store, vm)
    return problems




class Hosts:
    """The host half as vm-start's master half calls it (master/vm_start.py's HostHalf): the
    request built here, sent to the chosen host, its answer recorded here."""

    def __init__(self, store: Store, state_dir: Path, observer: Observer | None = None,
                 connect: Callable[[Row], InProcess | Stream] | None = None) -> None:
        self.store, self.state_dir, self.observer, self.connect = store, state_dir, observer, connect

    def vm_start(self, vm: str, host: str, task: str, paused: bool, force: bool = False) -> None:
        from xetool.host.backend import HOST_FIELDS
        from xetool.master import resync

        with self.store.read() as txn:
            row = txn.must("host", host, HOST_FIELDS)
        c = HostClient(self.store, self.state_dir, row, self.observer, self.connect(row) if self.connect else None)
        # the first touch of the host: it must answer, and the store is matched with its domains
        # before anything else runs there (our own start's marks do not hold it back)
        resync.touch(self.store, self.state_dir, c, own_task=task)
        try:
            answer = c.call("vm_start", **start_request(self.store, vm, task, paused, force))
        except BaseException:
            # the host undid the start (or, its outcome unknown, the next resync settles it): the
            # master's copies of the start's reservations go
            with self.store.write() as txn:
                txn.db.execute("DELETE FROM reservation WHERE task = ?", (task,))
            raise
        record_start(self.store, vm, host, answer)

    def vm_start_undo(self, vm: str, host: str, task: str) -> None:
        """A master step after the hand-off failed: release everything the start took."""
        from xetool.host.backend import HOST_FIELDS

        with self.store.read() as txn:
            row = txn.must("host", host, HOST_FIELDS)
        release_vm(self.store, self.state_dir, row, vm)
