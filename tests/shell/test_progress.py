"""Progress shows on a terminal's stderr only, with the current step; never on a pipe."""

from __future__ import annotations

import io
import re

import pytest

from xetool.cli.context import Context
from xetool.cli.progress import progress

STEPS = ["choose host", "reserve memory", "build domain"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(ctx: Context) -> None:
    with progress(ctx, "Starting web01", STEPS) as p:
        for name in STEPS:
            p.step(name)
        p.note("waiting for the guest")


def test_nothing_when_stderr_is_not_a_terminal(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ctx = Context(tmp_path, out=io.StringIO(), err=io.StringIO())
    _run(ctx)
    assert ctx.err.getvalue() == "" and ctx.out.getvalue() == ""


def test_steps_on_a_terminal(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("NO_COLOR", raising=False)
    ctx = Context(tmp_path, out=io.StringIO(), err=Terminal())
    _run(ctx)
    shown = ctx.err.getvalue()
    assert "Starting web01" in shown and "reserve memory" in shown
    assert ctx.out.getvalue() == ""  # stdout stays clean for the results


def test_no_color_honoured(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("NO_COLOR", "1")
    ctx = Context(tmp_path, out=io.StringIO(), err=Terminal())
    _run(ctx)
    shown = ctx.err.getvalue()
    assert "build domain" in shown
    assert not re.search(r"\x1b\[[0-9;]*(3[0-9]|9[0-7]|38;)[0-9;]*m", shown), "colour codes with NO_COLOR set"


@pytest.mark.parametrize("opts", [{"quiet": True}, {"fmt": "json"}])
def test_quiet_and_json_show_nothing(tmp_path, opts: dict[str, object]) -> None:  # type: ignore[no-untyped-def]
    ctx = Context(tmp_path, out=io.StringIO(), err=Terminal(), **opts)  # type: ignore[arg-type]
    _run(ctx)
    assert ctx.err.getvalue() == ""


def test_counted_steps_for_multiple(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ctx = Context(tmp_path, out=io.StringIO(), err=Terminal())
    with progress(ctx, "Starting 3 VMs", 3) as p:
        for name in ("web01", "db01", "win01"):
            p.step(name)
    assert "Starting 3 VMs" in ctx.err.getvalue()
