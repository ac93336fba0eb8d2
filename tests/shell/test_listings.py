"""For scripts: --minimal, params= and --format=json agree with each other on every listing."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from xetool.cli.context import Context
from xetool.cli.main import main
from xetool.cli.registry import commands
from xetool.cli.views import spec_of
from xetool.store.codec import escape_minimal

LISTINGS = [c for c in commands().values() if c.lists and c.name.endswith("-list") and not c.reqd]


def xetool(*args: str, state: Path) -> str:
    """One command in this process (these tests run many)."""
    ctx = Context(state, out=io.StringIO(), err=io.StringIO())
    assert main(list(args), ctx=ctx) == 0, ctx.err.getvalue()  # type: ignore[attr-defined]
    return ctx.out.getvalue()  # type: ignore[attr-defined]


def _json(state: Path, name: str, *args: str) -> list[dict[str, object]]:
    return json.loads(xetool(name, "--format=json", *args, state=state))


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {v}" for k, v in value.items())
    if isinstance(value, list):
        return "; ".join(map(str, value))
    return "<not in database>" if value is None else str(value)


@pytest.mark.parametrize("cmd", LISTINGS, ids=lambda c: c.name)
def test_minimal_params_and_json_agree(pool: Path, cmd) -> None:  # type: ignore[no-untyped-def]
    spec = spec_of(cmd.cls)
    default = _json(pool, cmd.name)
    every = _json(pool, cmd.name, "params=all")
    assert len(default) == len(every)
    assert [list(r) for r in default] == [[f.cli_name for f in spec.fields if f.name in spec.list_params]] * len(default)
    assert [list(r) for r in every] == [[f.cli_name for f in spec.fields if not f.hidden]] * len(every)
    minimal = xetool(cmd.name, "--minimal", state=pool).rstrip("\n")
    assert minimal == ",".join(escape_minimal(_text(r["uuid"])) for r in default)
    named = xetool(cmd.name, "--minimal", "params=name-label" if spec.has_name_label else "params=uuid", state=pool)
    key = "name-label" if spec.has_name_label else "uuid"
    assert named.rstrip("\n") == ",".join(escape_minimal(_text(r[key])) for r in every)
    assert _json(pool, cmd.name, f"params={key}") == [{key: r[key]} for r in every]
