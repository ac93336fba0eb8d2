"""pytest plugin for the Xen lab: one "XENLAB PASS|FAIL|SKIP <test> (<seconds>s)" line per test
on the console, and "passed failed" counts in $XENLAB_RESULT_FILE for the harness's summary."""

from __future__ import annotations

import os

import pytest

_counts = {"passed": 0, "failed": 0}


def _emit(line: str) -> None:
    # straight to the console, past pytest's capture, so the harness sees it as it happens; on
    # the master's side of the SSH phase, the harness's pipe ($XENLAB_CONSOLE)
    with open(os.environ.get("XENLAB_CONSOLE", "/dev/console"), "w") as con:
        con.write("\n" + line + "\n")  # pytest -v may have left a line open


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    name = report.nodeid
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if report.passed:
            _counts["passed"] += 1
            _emit(f"XENLAB PASS {name} ({report.duration:.1f}s)")
        elif report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            _emit(f"XENLAB SKIP {name}: {reason}")
        else:
            _counts["failed"] += 1
            _emit(f"XENLAB FAIL {name} ({report.when}, {report.duration:.1f}s)")
    elif report.when == "teardown" and report.failed:
        _counts["failed"] += 1
        _emit(f"XENLAB FAIL {name} (teardown)")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = os.environ.get("XENLAB_RESULT_FILE")
    if path:
        with open(path, "w") as out:
            out.write(f"{_counts['passed']} {_counts['failed']}\n")
