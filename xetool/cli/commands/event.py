"""`event-wait`: wait until an object matches, for scripts that must not race a state change.

    xetool event-wait class=vm uuid=UUID power-state=running timeout=120

xe's event-wait blocks on Event.from with no overall limit; here the pool's truth is the SQLite
store, so we poll it (each poll is one read transaction, which never blocks a writer) with a
growing interval, and always within a timeout: a script gets EVENT_WAIT_TIMEOUT (exit status 4)
instead of a hang. `field=/=value` means "not equal", as in xe. It prints nothing on success.
"""

from __future__ import annotations

import time

from xetool.cli.context import Context
from xetool.cli.grammar import Args
from xetool.cli.output import Output
from xetool.cli.progress import progress
from xetool.cli.registry import Command
from xetool.cli.selectors import select, split_filters
from xetool.datamodel import get_class
from xetool.datamodel.types import ClassSpec, Field
from xetool.errors import XeError
from xetool.store.codec import UUID_RE, parse_cli, show
from xetool.store.db import Row

DEFAULT_TIMEOUT = 60.0
FIRST_POLL, MAX_POLL = 0.05, 1.0  # seconds: quick for fast changes, cheap for slow ones


def _timeout(text: str | None) -> float:
    from xetool.units import parse_seconds

    return DEFAULT_TIMEOUT if text is None else parse_seconds(text, "timeout")


def _not_equal(spec: ClassSpec, filters: dict[str, str]) -> list[tuple[Field, str]]:
    """Take the `field=/=value` filters out of `filters`, checked against each row read."""
    out = []
    for key in [k for k, v in filters.items() if v.startswith("/=")]:
        f = spec.field(key)
        if f is None or ":" in key:
            raise XeError("SYNTAX_ERROR", f"'{key}=/=' needs a scalar field of {spec.name}")
        value = filters.pop(key)[2:]
        parse_cli(f, value)  # the value must be one the field can have
        out.append((f, value))
    return out


def _differs(f: Field, want: str, row: Row) -> bool:
    return show(f, row.get(f.name)).lower() != show(f, parse_cli(f, want)).lower()


def event_wait(ctx: Context, cmd: Command, args: Args) -> Output:
    spec = get_class(args.params["class"])
    timeout = _timeout(args.get("timeout"))
    filters = split_filters(spec, {k: v for k, v in args.params.items() if k not in ("class", "timeout")})
    uuid = filters.get("uuid")
    if uuid is not None:
        if not UUID_RE.match(uuid):
            raise XeError("UUID_INVALID", spec.name, uuid)
        filters["uuid"] = uuid.lower()
        with ctx.store.read() as txn:
            txn.must(spec.name, uuid)  # waiting for an object that does not exist is a mistake
    unequal = _not_equal(spec, filters)
    fields = ["uuid", *(f.name for f, _ in unequal)]
    wanted = " ".join(f"{k}={v}" for k, v in args.params.items() if k not in ("class", "timeout"))
    deadline = time.monotonic() + timeout
    interval = FIRST_POLL
    with progress(ctx, f"Waiting for {spec.name}", None) as shown:
        shown.note(wanted or "any object")
        while True:
            with ctx.store.read() as txn:
                rows = select(txn, spec, dict(filters), fields, strict=True)
            if any(all(_differs(f, v, r) for f, v in unequal) for r in rows):
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise XeError("EVENT_WAIT_TIMEOUT", spec.name, f"{timeout:g}")
            time.sleep(min(interval, left))
            interval = min(interval * 1.5, MAX_POLL)
