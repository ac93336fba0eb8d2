"""Processes as /proc shows them: whether one runs, when it started, what it is called.

Standard library only: the listings' crash check (backends/simulator/liveness.py) and the task
janitor run these on every command."""

from __future__ import annotations


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()


def alive(pid: int) -> bool:
    """True for a running process; a zombie (exited, not yet reaped by its parent) is dead."""
    fields = _stat(pid)
    return bool(fields and fields[0] != "Z")


def start_time(pid: int) -> str:
    """The start time of a process in clock ticks since boot, or "" if it is gone: with the pid,
    it names the process (a pid alone may be reused)."""
    fields = _stat(pid)
    return fields[19] if fields and len(fields) > 19 else ""


def command_name(pid: int) -> str:
    """The process's name (/proc/<pid>/comm), or "" if it is gone."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def read_pid(pid_file: str) -> int | None:
    """The first number in a pid file, or None if there is none."""
    try:
        with open(pid_file) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
