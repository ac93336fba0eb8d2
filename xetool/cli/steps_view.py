"""How a long operation's named steps look on the command line.

--trace prints each step with its duration and note on stderr; on a terminal (and not --quiet)
a rich status line shows the current step; otherwise nothing decorative is printed.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from xetool.cli.context import Context


class StepView:
    def __init__(self, ctx: Context, title: str) -> None:
        self.ctx, self.title = ctx, title
        self._status: Any = None

    def __enter__(self) -> StepView:
        if self.ctx.interactive and not self.ctx.trace:
            from rich.console import Console

            console = Console(file=self.ctx.err, no_color=not self.ctx.color, highlight=False)
            self._status = console.status(self.title)
            self._status.start()
        elif self.ctx.trace:
            self.ctx.err.write(f"{self.title}\n")
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def step_started(self, index: int, total: int, name: str) -> None:
        if self._status is not None:
            self._status.update(f"{self.title}: {name} ({index + 1}/{total})")

    def step_done(self, name: str, seconds: float, note: str | None) -> None:
        if self.ctx.trace:
            self.ctx.err.write(f"  {name:<36} {seconds * 1000:8.1f} ms  {note or ''}\n".rstrip() + "\n")

    def step_undone(self, name: str, error: BaseException | None) -> None:
        if self.ctx.trace:
            self.ctx.err.write(f"  undo {name:<31} {'failed: ' + str(error).splitlines()[0] if error else 'done'}\n")
