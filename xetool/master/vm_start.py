"""vm-start, the pool master's half: the seed's "On the pool master" steps, in its order.

Marks (VM, VBDs, VIFs), the memory overhead, the choice of host with its allocation, the hand-off
to the host's half, then the unmarking, the message and the RRD push. Every mark is made in a
`BEGIN IMMEDIATE` transaction together with the check that allows it, and carries the task that
made it, so a mark whose process died is found and cleared by the next command (tasks.py).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from xetool import lifecycle, messages, tasks
from xetool.errors import XeError
from xetool.master import rrd
from xetool.master.snapshot import pool_view, read_vm
from xetool.placement import choose
from xetool.placement.memory import vm_compute_memory_overhead
from xetool.records import field, record
from xetool.steps import Note, Runner, Step
from xetool.store.db import Store

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from typing import Protocol

    from xetool.steps import Observer

    class HostHalf(Protocol):
        """The one narrow call between the halves: identifiers only, so it can cross machines."""

        def vm_start(self, vm: str, host: str, task: str, paused: bool, force: bool = False) -> None: ...

        def vm_start_undo(self, vm: str, host: str, task: str) -> None:
            """Take back a start that the host half completed (a later master step failed)."""


@record
class StartRequest:
    vm: str  # uuid
    on: str | None = None  # host uuid: start_on
    paused: bool = False
    force: bool = False  # skip the host's pre-boot safety checks (memory pinning), as xapi's force
    seed: int | None = None  # makes the chooser's random order reproducible


@record
class StartResult:
    vm: str
    host: str = ""
    category: str = ""
    task: str = ""
    timings: list[tuple[str, float, str | None]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def rng_for(seed: int | None) -> random.Random:
    if seed is None and os.environ.get("XETOOL_PLACEMENT_SEED"):
        seed = int(os.environ["XETOOL_PLACEMENT_SEED"])
    return random.Random(seed)


class MasterStart:
    """The master's steps for one VM. Build, then `run()`."""

    def __init__(self, store: Store, state_dir: Path, req: StartRequest, host_half: HostHalf,
                 observer: Observer | None = None) -> None:
        self.store, self.state_dir, self.req, self.host_half = store, state_dir, req, host_half
        self.runner = Runner(observer)
        self.result = StartResult(req.vm)
        self.op = "start_on" if req.on else "start"
        self.vbds: list[str] = []
        self.vifs: list[str] = []
        self.wlb_warnings: list[str] = []

    # --- marks ----------------------------------------------------------------------------------
    def with_vm_operation(self) -> str:
        """Check and mark in one transaction; another operation on the VM is
        OTHER_OPERATION_IN_PROGRESS at once (the command line's while_busy waits, if asked)."""
        with self.store.write() as txn:
            vm = txn.must("vm", self.req.vm)
            lifecycle.assert_vm_operation_valid(txn, vm, self.op)
            self.result.task = tasks.create(txn, f"VM.{self.op}", f"{self.op} {vm['name_label']}", vm=vm["uuid"])
            lifecycle.mark(txn, "vm", vm["uuid"], self.result.task, self.op)
        return f"task {self.result.task}"

    def unmark_vm(self) -> Note:
        with self.store.write() as txn:
            lifecycle.unmark(txn, "vm", self.req.vm, self.result.task)
            for cls, uuids in (("vbd", self.vbds), ("vif", self.vifs)):
                for uuid in uuids:  # update_vbd_operations / update_vif_operations
                    if txn.get(cls, uuid, ["uuid"]):
                        lifecycle.update_allowed_operations(txn, cls, uuid)
        return None

    def _mark_devices(self, cls: str, check: str) -> str:
        with self.store.write() as txn:
            vm = txn.must("vm", self.req.vm)
            uuids = txn.uuids(cls, {"VM": self.req.vm})
            rows = [txn.must(cls, u) for u in uuids]
            for row in rows:  # check every one before marking any; the disks' sharing is decided
                # here, in the transaction whose marks the next start of a VM sharing a disk sees
                if cls == "vbd":
                    err = lifecycle.vbd_attach_error(txn, row, vm, check, starting=True)
                else:
                    err = lifecycle.vif_operation_error(row, vm, check)
                if err is not None:
                    raise err
            for row in rows:
                lifecycle.mark(txn, cls, row["uuid"], self.result.task, "attach")
        setattr(self, cls + "s", uuids)
        return f"{len(uuids)} marked attach"

    def _unmark_devices(self, cls: str) -> None:
        with self.store.write() as txn:
            for uuid in getattr(self, cls + "s"):
                lifecycle.unmark(txn, cls, uuid, self.result.task)

    # --- memory and placement -------------------------------------------------------------------
    def compute_memory_overhead(self) -> str:
        with self.store.write() as txn:
            overhead = vm_compute_memory_overhead(read_vm(txn, self.req.vm))
            txn.update("vm", self.req.vm, {"memory_overhead": overhead})
        return f"{overhead} bytes"

    def allocate_vm_to_host(self) -> str:
        """Choose the host (WLB, then the default logic), check the HA plan, and allocate:
        the host's vm_start operation, the boot record and scheduled_to_be_resident_on, all in
        the one write transaction that made the choice, so concurrent starts never over-commit.
        A recommender is asked before that transaction (it may take seconds) and its host is
        checked again inside it."""
        recommended = None if self.req.on else self._ask_wlb()
        with self.store.write() as txn:
            vm = read_vm(txn, self.req.vm)
            pool = pool_view(txn)
            placement = None
            if self.req.on:
                placement = choose.start_on(vm, self.req.on, pool)
            elif recommended:
                try:
                    placement = choose.start_on(vm, recommended, pool)
                except XeError as err:
                    self.result.warnings.append(f"the recommended host can no longer run the VM ({err.code})")
            if placement is None:
                placement = choose.choose_host_for_vm(vm, pool, rng_for(self.req.seed))
            host = placement.host.uuid
            refusal = lifecycle.host_operation_error(txn.must("host", host), "vm_start")
            if refusal is not None:
                raise refusal
            lifecycle.mark(txn, "host", host, self.result.task, "vm_start")
            # The janitor finds the host's half-built state (runtime file) through the task.
            task = txn.must("task", self.result.task, ["other_config"])
            txn.update("task", self.result.task, {"other_config": {**task["other_config"], "host": host}})
            record = txn.must("vm", self.req.vm)
            record.pop("last_booted_record", None)
            txn.update("vm", self.req.vm, {"scheduled_to_be_resident_on": host,
                                           "last_booted_record": json.dumps(record, sort_keys=True)})
            for warning in self.wlb_warnings:
                messages.create(txn, "WLB_CONSULTATION_FAILED", 3, "Pool", txn.pool()["uuid"], warning)
        self.result.host = host
        self.result.category = "wlb" if recommended == host and not self.req.on else placement.category
        return f"host {placement.host.name_label} ({self.result.category})"

    def _ask_wlb(self) -> str | None:
        with self.store.read() as txn:
            pool = pool_view(txn)
            if pool.wlb is None or not pool.wlb.active:
                return None
            vm = read_vm(txn, self.req.vm)
        from xetool.placement import wlb

        outcome = wlb.choose_host_with_wlb(vm, pool, rng_for(self.req.seed))
        if outcome.warning is not None:
            self.wlb_warnings.append(outcome.warning.message)
            self.result.warnings.append(outcome.warning.message)
        return outcome.placement.host.uuid if outcome.placement.category == "wlb" else None

    def clear_reservations(self) -> None:
        """finally_clear_host_operation and clear_reservations, on either outcome."""
        self.remove_host_operation()
        self.unset_scheduled_to_be_resident_on()

    def remove_host_operation(self) -> str | None:
        if self.result.host:
            with self.store.write() as txn:
                lifecycle.unmark(txn, "host", self.result.host, self.result.task)
        return None

    def unset_scheduled_to_be_resident_on(self) -> str | None:
        with self.store.write() as txn:
            if txn.must("vm", self.req.vm, ["scheduled_to_be_resident_on"])["scheduled_to_be_resident_on"]:
                txn.update("vm", self.req.vm, {"scheduled_to_be_resident_on": None})
        return None

    # --- the hand-off and after ------------------------------------------------------------------
    def execute_on_host(self) -> str:
        self.host_half.vm_start(self.req.vm, self.result.host, self.result.task, self.req.paused, self.req.force)
        return "paused" if self.req.paused else "running"

    def undo_execute_on_host(self) -> None:
        self.host_half.vm_start_undo(self.req.vm, self.result.host, self.result.task)

    def create_message(self) -> str:
        with self.store.write() as txn:
            vm = txn.must("vm", self.req.vm, ["name_label"])
            host = txn.must("host", self.result.host, ["name_label"])
            body = (f"VM '{vm['name_label']}' (uuid: {self.req.vm}) started on host: "
                    f"{host['name_label']} (uuid: {self.result.host})")
            return messages.create(txn, "VM_STARTED", 5, "VM", self.req.vm, body)

    def push_rrd(self) -> str:
        return rrd.push_rrd(self.state_dir, self.req.vm, self.result.host)

    # --- the list -------------------------------------------------------------------------------
    def steps(self) -> list[Step]:
        s = Step
        return [
            s("with_vm_operation", self.with_vm_operation, self.unmark_vm),
            s("with_vbds_marked", lambda: self._mark_devices("vbd", "attach"), lambda: self._unmark_devices("vbd")),
            s("with_vifs_marked", lambda: self._mark_devices("vif", "attach"), lambda: self._unmark_devices("vif")),
            s("compute_memory_overhead", self.compute_memory_overhead),
            s("allocate_vm_to_host", self.allocate_vm_to_host, self.clear_reservations),
            s("execute_on_host", self.execute_on_host, self.undo_execute_on_host),
            s("remove_host_operation", self.remove_host_operation),
            s("unset_scheduled_to_be_resident_on", self.unset_scheduled_to_be_resident_on),
            s("unmark_vifs", lambda: self._unmark_devices("vif")),
            s("unmark_vbds", lambda: self._unmark_devices("vbd")),
            s("unmark_vm", self.unmark_vm),
            # The VM runs and is recorded: from here a failure is a warning, never an undo.
            s("create_vm_started_message", self.create_message, best_effort=True),
            s("push_rrd", self.push_rrd, best_effort=True),
        ]

    def run(self) -> StartResult:
        tasks.reap_dead_tasks(self.store)
        error: BaseException | None = None
        try:
            self.runner.run(self.steps())
        except BaseException as err:
            error = err
            raise
        finally:
            if self.result.task:
                tasks.finish(self.store, self.result.task, error, self.result.host)
            self.result.timings = self.runner.timings
            for name, failure in self.runner.ignored:
                self.result.warnings.append(f"the VM started, but {name} failed: "
                                            + (failure.code if isinstance(failure, XeError) else repr(failure)))
        return self.result
