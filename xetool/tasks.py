"""Tasks: every long operation records the process that runs it, so that a later command can tell
a mark left by a live operation from one left by a process that died (SIGKILL, a crash, a reboot).

A process is identified by its pid and its start time (from /proc), so a reused pid is not
mistaken for the original. `reap_dead_tasks` is the janitor: it undoes what a dead task left
(its marks, its reservations, a half-built domain) before the command that found it goes on.
"""

from __future__ import annotations

import os

from xetool import processes
from xetool.clock import now_iso
from xetool.errors import XeError
from xetool.store.db import Row, Store, Txn

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from typing import Any

_HOSTNAME = os.uname().nodename  # what socket.gethostname() says, without importing socket
MARKED_CLASSES = ("vm", "vbd", "vif", "host", "vdi")


def task_alive(task: Row) -> bool:
    if task.get("hostname") and task["hostname"] != _HOSTNAME:
        return True  # another machine's process: not ours to judge
    pid = task.get("pid") or 0
    return pid > 0 and processes.start_time(pid) == task.get("process_start")


def create(txn: Txn, name: str, description: str = "", **other: str) -> str:
    pid = os.getpid()
    return txn.insert("task", {
        "name_label": name, "name_description": description, "created": now_iso(), "pid": pid,
        "process_start": processes.start_time(pid), "hostname": _HOSTNAME, "other_config": other,
    })


def finish(store: Store, task: str, error: BaseException | None = None, result: str = "") -> None:
    values: dict[str, Any] = {"finished": now_iso(), "progress": 1.0}
    if error is None:
        values |= {"status": "success", "result": result}
    else:
        info = [error.code, *error.params.values()] if isinstance(error, XeError) else ["INTERNAL_ERROR", repr(error)]
        values |= {"status": "failure", "error_info": info}
    with store.write() as txn:
        if txn.get("task", task, ["uuid"]) is not None:
            txn.update("task", task, values)
        timeout_tasks(txn)


# xapi's task GC (Db_gc_util.timeout_tasks, Xapi_globs): a completed task is destroyed 65 minutes
# after it finished, and when more than 200 remain the oldest completed ones go first. Pending
# tasks are never collected here: a live one holds marks, and a dead one's are the janitor's
# (reap_dead_tasks) to clear, which completes it, so it is collected in turn.
COMPLETED_TASK_TIMEOUT = 65 * 60
MAX_TASKS = 200


def timeout_tasks(txn: Txn, now: float | None = None) -> int:
    """Collect finished tasks as xapi does (run as each command's task finishes, where xapi runs
    it from its GC thread); return how many were destroyed."""
    import time

    cutoff = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((now or time.time()) - COMPLETED_TASK_TIMEOUT))
    gone = txn.db.execute("DELETE FROM task WHERE status != 'pending' AND finished < ?", (cutoff,)).rowcount
    overflow = int(txn.db.execute("SELECT COUNT(*) FROM task").fetchone()[0]) - MAX_TASKS
    if overflow > 0:
        gone += txn.db.execute(
            "DELETE FROM task WHERE rowid IN (SELECT rowid FROM task WHERE status != 'pending' "
            "ORDER BY finished, rowid LIMIT ?)", (overflow,)).rowcount
    return gone


def note(store: Store, task: str, **other: str) -> None:
    """Record host-side facts a janitor would need (domid, pids, the host) on the task."""
    with store.write() as txn:
        row = txn.must("task", task, ["uuid", "other_config"])
        txn.update("task", task, {"other_config": {**row["other_config"], **other}})


def set_step(store: Store, task: str, step: str, progress: float) -> None:
    with store.write() as txn:
        txn.update("task", task, {"current_step": step, "progress": round(progress, 3)})


def reap_dead_tasks(store: Store) -> list[str]:
    """Clean up after every pending task whose process is gone; return their uuids."""
    with store.read() as txn:
        pending = txn.select("task", None, {"status": "pending"})
    dead = [t for t in pending if not task_alive(t)]
    if dead:
        from xetool.host.janitor import cleanup_dead_task  # what a dead start built on its host
    for task in dead:
        cleanup_dead_task(store, task)
        with store.write() as txn:
            _unmark_everything(txn, task["uuid"])
            txn.update("task", task["uuid"], {
                "status": "failure", "finished": now_iso(),
                "error_info": ["TASK_CANCELLED", task["uuid"], f"process {task['pid']} died during {task['current_step'] or task['name_label']}"],
            })
    return [t["uuid"] for t in dead]


def notice_dead_tasks(store: Store) -> None:
    """For listings: a cheap look at the pending tasks; the janitor runs only if one is dead."""
    with store.read() as txn:
        pending = txn.select("task", ["uuid", "pid", "process_start", "hostname"], {"status": "pending"})
    if any(not task_alive(t) for t in pending):
        reap_dead_tasks(store)


def _unmark_everything(txn: Txn, task: str) -> None:
    from xetool import lifecycle

    for cls in MARKED_CLASSES:
        for row in txn.select(cls, ["uuid", "current_operations"]):
            if task in row["current_operations"]:
                if cls == "vm":
                    vm = txn.must("vm", row["uuid"], ["uuid", "scheduled_to_be_resident_on"])
                    if vm["scheduled_to_be_resident_on"]:
                        txn.update("vm", row["uuid"], {"scheduled_to_be_resident_on": None})
                lifecycle.unmark(txn, cls, row["uuid"], task)
