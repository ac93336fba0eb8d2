"""The host's memory broker (squeezed's role), one per host, serialised by a file lock.

It hands a new domain a reservation in [dynamic_min + overhead, dynamic_max + overhead]: free
memory first, and when that is not enough it lowers the balloon targets (`memory/target`) of the
guests that can balloon, towards their dynamic_min, waits (bounded) for their allocation to follow,
then reserves. What is free is shared between guests in proportion to their dynamic ranges, as
squeezed's proportional policy does; when a VM stops its memory goes back to the others.

Figures, in KiB (as Xen counts):
  free       = what the hypervisor reports free − reservations not yet handed to a domain
               − what guests are still owed (a target above their allocation)
  freeable   = Σ over balloonable guests of (what they hold or are owed − their dynamic_min)
  available  = free + freeable − RESERVE_KIB (what a new VM could get: host-compute-free-memory)
A guest is balloonable when it advertised control/feature-balloon, runs (not paused), has its
dynamic range in xenstore and is not marked memory/uncooperative.

After every change the broker publishes `free` (host memory-free), `available` (host
memory-free-computed, which placement's memory check uses) and each VM's memory-actual and
memory-target to the master (an event of the request it serves), with the reservation change
that made them; the master records both in one transaction. The reservations themselves live on
the host (its ledger), since every start on the host must see them.
"""

from __future__ import annotations

import os
import time
import uuid as uuidlib
from contextlib import contextmanager
from pathlib import Path

from xetool.backends.base import Backend
from xetool.errors import XeError
from xetool.host.locks import broker_lock
from xetool.records import record
from xetool.host.side import HostSide
from xetool.xenstore.client import XsClient

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

RESERVE_KIB = 72 * 1024  # squeezed's target_host_free_mem: low-memory emergency pool 64 MiB + 8 MiB
TOLERANCE_KIB = 1024  # a balloon driver within a MiB of its target has reached it


def allocation_slack(guests: int) -> int:
    """What a squeeze may fall short by and still succeed: each balloon driver it lowered may
    stop within its tolerance of the target (Linux's stops a few hundred KiB above it on Xen
    4.17), and the reserve's emergency pool absorbs that, as squeezed's does. Placement counts
    the guests' full give-back, so without it a start placement accepts would be refused."""
    return TOLERANCE_KIB * guests
POLL = 0.004  # seconds between looks at the guests' allocations during a squeeze
DEFAULT_BALLOON_TIMEOUT = 5.0  # seconds a guest has to reach a lowered target


def balloon_timeout() -> float:
    """XETOOL_BALLOON_TIMEOUT seconds (squeezed's stuck-driver time), for tests and slow hosts."""
    try:
        from xetool.host import env

        return max(0.0, float(env.get("XETOOL_BALLOON_TIMEOUT") or DEFAULT_BALLOON_TIMEOUT))
    except ValueError:
        return DEFAULT_BALLOON_TIMEOUT


@record
class Guest:
    """One guest domain as the broker sees it (KiB)."""

    domid: int
    uuid: str
    actual: int  # what the hypervisor says the domain has now
    target: int  # memory/target (its actual allocation when none is written)
    dynamic_min: int = 0
    dynamic_max: int = 0
    balloon: bool = False  # control/feature-balloon
    uncooperative: int | None = None  # memory/uncooperative: its allocation when it was marked
    paused: bool = False

    @property
    def balloonable(self) -> bool:
        return (self.balloon and self.uncooperative is None and not self.paused
                and 0 < self.dynamic_min <= self.dynamic_max)

    @property
    def committed(self) -> int:
        return max(self.actual, self.target)

    @property
    def owed(self) -> int:
        return max(0, self.target - self.actual)

    @property
    def freeable(self) -> int:
        return max(0, self.committed - self.dynamic_min) if self.balloonable else 0

    @property
    def range(self) -> int:
        return max(0, self.dynamic_max - self.dynamic_min)

    def share(self, gamma: float) -> int:
        return self.dynamic_min + int(gamma * self.range)


@record
class HostMemory:
    physical_free: int
    outstanding: int
    guests: list[Guest]
    # Σ over reservations not yet handed over of what they hold beyond their VM's minimum: that
    # start finishes before the next one on the host reserves (the host's queue), and its guest
    # can then give it back, so the figure placement reads counts it
    outstanding_excess: int = 0

    @property
    def free(self) -> int:
        return self.physical_free - self.outstanding - sum(g.owed for g in self.guests)

    @property
    def freeable(self) -> int:
        return sum(g.freeable for g in self.guests)

    @property
    def reachable(self) -> int:
        """What the broker could hand a new domain now, squeezing every balloonable guest."""
        return max(0, self.free + self.freeable - RESERVE_KIB)

    @property
    def available(self) -> int:
        """What it could hand the next start in the host's queue (memory-free-computed)."""
        return self.reachable + self.outstanding_excess

    def balloonable(self) -> list[Guest]:
        return [g for g in self.guests if g.balloonable]


def gamma_for(guests: list[Guest], surplus: int, extra_range: int = 0) -> float:
    """squeezed's proportional policy: the one fraction of every dynamic range that `surplus`
    (memory beyond everyone's dynamic_min) pays for, in [0, 1]."""
    total = sum(g.range for g in guests) + extra_range
    if total <= 0:
        return 1.0
    return min(1.0, max(0.0, surplus / total))


# --- reading the host --------------------------------------------------------------------------

_KEYS = ("memory/target", "memory/dynamic-min", "memory/dynamic-max", "control/feature-balloon",
         "memory/uncooperative")


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


# --- the broker's ledger: reservations not yet handed to a domain, kept on the host --------------

@record
class Ledger:
    """The host's reservations (id -> vm, task, kib, lo: the VM's dynamic_min + overhead), and
    the number of the last report it sent the master (with a per-ledger epoch, so that the
    master ignores a report older than one it has recorded, whatever order they arrive in)."""

    epoch: str
    seq: int
    reservations: dict[str, dict[str, Any]]

    def outstanding(self) -> tuple[int, int]:
        """Their sum, and their sum beyond each VM's minimum (KiB)."""
        rs = self.reservations.values()
        return sum(r["kib"] for r in rs), sum(max(0, r["kib"] - r.get("lo", r["kib"])) for r in rs)


def _ledger_path(side: HostSide) -> Path:
    return side.dir / "memory-reservations.json"


def load_ledger(side: HostSide) -> Ledger:
    """Read under the broker's lock (or for a look that changes nothing)."""
    import json

    try:
        data = json.loads(_ledger_path(side).read_text())
        return Ledger(str(data["epoch"]), int(data["seq"]), dict(data["reservations"]))
    except (OSError, ValueError, KeyError, TypeError):
        return Ledger(str(uuidlib.uuid4()), 0, {})


def save_ledger(side: HostSide, ledger: Ledger) -> None:
    import json

    from xetool.paths import write_atomic

    side.dir.mkdir(parents=True, exist_ok=True)
    write_atomic(_ledger_path(side), json.dumps({"epoch": ledger.epoch, "seq": ledger.seq,
                                                 "reservations": ledger.reservations}))


def read_host(ledger: Ledger, backend: Backend, xs: XsClient) -> HostMemory:
    """The hypervisor's free memory and domains, and each guest's balloon keys (one pipelined
    round trip to xenstore for all of them).

    The reservations are read first: a start builds its domain outside the broker's lock and
    then hands its reservation over, so the other order could see neither (and hand the memory
    out twice); this one at worst counts it twice."""
    outstanding, excess = ledger.outstanding()
    physical, listed = backend.memory_snapshot()
    domains = [d for d in listed if d.domid != 0 and d.built and not d.dying and d.shutdown_reason is None]
    paths = [f"/local/domain/{d.domid}/{k}" for d in domains for k in _KEYS]
    values = xs.read_many(paths) if paths else []
    guests = []
    for n, d in enumerate(domains):
        target, dmin, dmax, feature, uncoop = values[n * len(_KEYS):(n + 1) * len(_KEYS)]
        guests.append(Guest(d.domid, d.uuid, d.memory_kib, _int(target) or d.memory_kib, _int(dmin) or 0,
                            _int(dmax) or 0, feature == "1", _int(uncoop), d.paused))
    hm = HostMemory(physical, outstanding, guests, excess)
    _settle_cooperation(xs, hm)
    return hm


def _settle_cooperation(xs: XsClient, hm: HostMemory) -> None:
    """A guest marked uncooperative that has since moved, or now sits on a target other than
    the one it ignored, cooperates again (squeezed's update_cooperative_flags)."""
    for g in hm.guests:
        if g.uncooperative is not None and abs(g.actual - g.uncooperative) > TOLERANCE_KIB:
            xs.rm(f"/local/domain/{g.domid}/memory/uncooperative")
            g.uncooperative = None


# --- the broker --------------------------------------------------------------------------------

class Broker:
    """One session with a host's broker: its lock held, its xenstore reachable."""

    def __init__(self, side: HostSide, backend: Backend, xs: XsClient) -> None:
        self.side, self.backend, self.xs = side, backend, xs
        self.ledger = load_ledger(side)

    def read(self) -> HostMemory:
        return read_host(self.ledger, self.backend, self.xs)

    # squeezing ---------------------------------------------------------------------------------
    def _set_target(self, g: Guest, target: int) -> bool:
        """Move a guest's target; False if its domain has gone (or shut down) meanwhile: a stop
        destroys domains without waiting for the broker."""
        try:
            self.backend.set_memory_target(g.domid, target)
        except XeError:
            info = self.backend.domain_info(g.domid)
            if info is None or info.uuid != g.uuid or info.shutdown_reason is not None:
                return False
            raise
        g.target = target
        return True

    def squeeze(self, hm: HostMemory, targets: dict[int, int], enough: int) -> tuple[HostMemory, list[Guest]]:
        """Lower the guests' targets, wait until they reach them (or `enough` KiB is usable),
        bounded by the balloon timeout; mark the ones that did not move uncooperative. Returns
        the host afterwards and the guests that failed to cooperate."""
        by_domid = {g.domid: g for g in hm.guests}
        asked = [by_domid[d] for d in targets]
        for g in asked:
            if not self._set_target(g, targets[g.domid]):
                del targets[g.domid]
        pending = self.wait_down(targets)
        after = self.read()
        failed = []
        if pending and after.free - RESERVE_KIB + allocation_slack(len(targets)) < enough:
            for g in (by_domid[d] for d in pending):
                now = next((x for x in after.guests if x.domid == g.domid), None)
                if now is not None:
                    self.xs.write(f"/local/domain/{g.domid}/memory/uncooperative", str(now.actual))
                    now.uncooperative = now.actual
                    failed.append(now)
        return after, failed

    def wait_down(self, targets: dict[int, int]) -> list[int]:
        """Wait, bounded by the balloon timeout, until each domain's allocation (as the
        hypervisor reports it) is down to its target; returns the domids still above."""
        deadline = time.monotonic() + balloon_timeout()
        while True:
            actual = {d.domid: d.memory_kib for d in self.backend.list_domains()}
            pending = [d for d, t in targets.items() if d in actual and actual[d] > t + TOLERANCE_KIB]
            if not pending or time.monotonic() >= deadline:
                return pending
            time.sleep(POLL)

    def restore(self, targets: dict[int, int]) -> None:
        """Put back targets lowered for a reservation that failed."""
        for domid, target in targets.items():
            try:
                self.backend.set_memory_target(domid, target)
            except XeError:
                pass  # the domain went away meanwhile: nothing to give back

    def reserve(self, vm: str, task: str, lo: int, hi: int, attempts: int = 3) -> tuple[str, int]:
        """Reserve between lo and hi KiB (squeezed's reserve_memory_range). A squeeze that fell
        short while guests were still moving is tried again (as xenopsd retries), at most
        `attempts` times, unless a guest refused."""
        for _ in range(attempts - 1):
            try:
                return self._reserve(vm, task, lo, hi)
            except XeError as err:
                if err.code != "HOST_NOT_ENOUGH_FREE_MEMORY" or self.read().reachable < lo:
                    raise
        return self._reserve(vm, task, lo, hi)

    def _reserve(self, vm: str, task: str, lo: int, hi: int) -> tuple[str, int]:
        hm = self.read()
        usable = hm.free - RESERVE_KIB
        if usable < hi:
            movable = hm.balloonable()
            surplus = hm.free + hm.freeable - RESERVE_KIB - lo
            if surplus < 0:
                self.publish(hm)
                raise XeError("HOST_NOT_ENOUGH_FREE_MEMORY", lo * 1024, hm.reachable * 1024)
            gamma = gamma_for(movable, surplus, hi - lo)
            want = lo + int(gamma * (hi - lo))
            if usable < want:
                lowered = {g.domid: g.share(gamma) for g in movable if g.committed > g.share(gamma) + TOLERANCE_KIB}
                originals = {g.domid: g.target for g in movable if g.domid in lowered}
                hm, failed = self.squeeze(hm, lowered, lo)
                usable = hm.free - RESERVE_KIB
                if usable + allocation_slack(len(lowered)) < lo:
                    self.restore(originals)
                    hm = self.read()
                    self.publish(hm)
                    if failed:
                        raise XeError("VMS_FAILED_TO_COOPERATE", ", ".join(g.uuid for g in failed))
                    raise XeError("HOST_NOT_ENOUGH_FREE_MEMORY", lo * 1024, max(0, usable) * 1024)
                # a guest that did not move keeps the target it had
                self.restore({d: t for d, t in originals.items() if any(g.domid == d for g in failed)})
        amount = max(lo, min(usable, hi))
        rid = str(uuidlib.uuid4())
        hm.outstanding += amount
        hm.outstanding_excess += amount - lo
        self.ledger.reservations[rid] = {"vm": vm, "task": task, "kib": amount, "lo": lo}
        self.publish(hm, {"add": {"id": rid, "vm": vm, "task": task, "kib": amount}})
        return rid, amount

    def rebalance(self) -> HostMemory:
        """Give what is free back to the guests, in proportion to their ranges, up to their
        dynamic_max (only raising targets: nobody waits for this)."""
        hm = self.read()
        movable = hm.balloonable()
        budget = hm.free - RESERVE_KIB
        if movable and budget > TOLERANCE_KIB:
            gamma = gamma_for(movable, hm.free + hm.freeable - RESERVE_KIB)
            raises = {g.domid: g.share(gamma) - g.committed for g in movable if g.share(gamma) - g.committed > TOLERANCE_KIB}
            total = sum(raises.values())
            scale = min(1.0, budget / total) if total else 0.0
            for g in movable:
                up = int(raises.get(g.domid, 0) * scale)
                if up > TOLERANCE_KIB:
                    self._set_target(g, min(g.dynamic_max, g.committed + up))
        self.publish(hm)
        return hm

    def set_dynamic_range(self, vm: str, domid: int, lo: int, hi: int) -> int:
        """A running VM's new dynamic range: its target moves into it through the broker;
        raising its minimum needs that memory free or freeable from the others."""
        hm = self.read()
        me = next((g for g in hm.guests if g.domid == domid and g.uuid == vm), None)
        if me is None:
            raise XeError("VM_BAD_POWER_STATE", vm, "running", "halted")
        others = [g for g in hm.balloonable() if g.domid != domid]
        need = lo - me.committed  # what it must gain to reach its new minimum
        if need > 0:
            room = hm.free - RESERVE_KIB + sum(g.freeable for g in others)
            if room < need:
                self.publish(hm)
                raise XeError("HOST_NOT_ENOUGH_FREE_MEMORY", need, max(0, room))  # KiB, as xapi here
            if hm.free - RESERVE_KIB < need:
                gamma = gamma_for(others, room - need)
                lowered = {g.domid: g.share(gamma) for g in others if g.committed > g.share(gamma) + TOLERANCE_KIB}
                originals = {g.domid: g.target for g in others if g.domid in lowered}
                hm, failed = self.squeeze(hm, lowered, need)
                if hm.free - RESERVE_KIB < need:
                    self.restore(originals)
                    self.publish(self.read())
                    if failed:
                        raise XeError("VMS_FAILED_TO_COOPERATE", ", ".join(g.uuid for g in failed))
                    raise XeError("HOST_NOT_ENOUGH_FREE_MEMORY", need, max(0, hm.free - RESERVE_KIB))
                me = next(g for g in hm.guests if g.domid == domid)
        self.xs.write_many({f"/local/domain/{domid}/memory/dynamic-min": str(lo),
                            f"/local/domain/{domid}/memory/dynamic-max": str(hi)})
        me.dynamic_min, me.dynamic_max = lo, hi
        target = max(lo, min(hi, me.target))
        if target != me.target:
            self._set_target(me, target)
            if target < me.actual:  # what it gives back goes to the others once it is free
                self.wait_down({domid: target})
        return target

    # publishing --------------------------------------------------------------------------------
    def publish(self, hm: HostMemory, change: dict[str, Any] | None = None) -> None:
        """The host's figures and its guests' allocations and targets, to the master (with the
        reservation change that made them: the master records both in one transaction). The
        ledger is saved first: the host's own record is the truth."""
        self.ledger.seq += 1
        save_ledger(self.side, self.ledger)
        report = {"event": "memory", "epoch": self.ledger.epoch, "seq": self.ledger.seq,
                  "free_kib": max(0, hm.free), "available_kib": hm.available,
                  "guests": {g.uuid: [g.actual, g.target] for g in hm.guests}}
        if change:
            report["change"] = change
        self.side.emit(report)


@contextmanager
def session(side: HostSide, backend: Backend | None = None) -> Iterator[Broker]:
    backend = backend or side.backend
    with broker_lock(side.dir), XsClient(backend.xenstore_socket()) as xs:
        yield Broker(side, backend, xs)


# --- the calls the host half makes ---------------------------------------------------------------

def free_kib(side: HostSide) -> int:
    """What a new reservation could get now (host-compute-free-memory, in KiB); published."""
    with session(side) as broker:
        hm = broker.read()
        broker.publish(hm)
    return hm.available


def reserve(side: HostSide, vm: str, task: str, min_kib: int, max_kib: int) -> tuple[str, int]:
    """Reserve as much of [min_kib, max_kib] as the broker can free. Returns (id, KiB)."""
    with session(side) as broker:
        return broker.reserve(vm, task, min_kib, max_kib)


def _drop(side: HostSide, keep: Callable[[str, dict[str, Any]], bool],
          change: Callable[[list[str]], dict[str, Any]]) -> list[str]:
    """Take reservations out of the ledger (under the broker's lock) and tell the master."""
    with broker_lock(side.dir):
        ledger = load_ledger(side)
        gone = [rid for rid, r in ledger.reservations.items() if not keep(rid, r)]
        if not gone:
            return []
        for rid in gone:
            del ledger.reservations[rid]
        save_ledger(side, ledger)
    side.emit({"event": "memory", "change": change(gone)})
    return gone


def transfer_to_domain(side: HostSide, rid: str, domid: int) -> None:
    """The domain now holds the memory: the reservation has done its job. The master keeps its
    copy (with the domid) until it records the VM as resident, so that placement counts the
    start once in between."""
    _drop(side, lambda r, _: r != rid, lambda gone: {"transfer": {"id": rid, "domid": domid}})


def release(side: HostSide, rids: list[str]) -> list[str]:
    return _drop(side, lambda r, _: r not in rids, lambda gone: {"release": gone})


def release_task(side: HostSide, task: str) -> list[str]:
    """Release every reservation a (dead) task made; returns their ids."""
    return _drop(side, lambda _, r: r["task"] != task, lambda gone: {"release": gone})


def rebalance(side: HostSide, backend: Backend | None = None) -> None:
    """After a VM stopped (or a reservation was given back): the others may grow again."""
    with session(side, backend) as broker:
        broker.rebalance()


def publish(side: HostSide) -> None:
    with session(side) as broker:
        broker.publish(broker.read())


def set_dynamic_range(side: HostSide, backend: Backend, vm: str, domid: int, lo: int, hi: int) -> int:
    """A running VM's new dynamic range (KiB): its target moves into it, and what it gives back
    goes to the others."""
    with session(side, backend) as broker:
        target = broker.set_dynamic_range(vm, domid, lo, hi)
        broker.rebalance()
    return target
