"""How a long operation's named steps look on the command line: --trace prints each step with
its duration and note on stderr; on a terminal the progress display names the current step;
otherwise nothing decorative is printed."""

from __future__ import annotations

from contextlib import ExitStack
from types import TracebackType

from xetool.cli.context import Context
from xetool.cli.progress import Progress, progress


class StepView:
    """A steps.Observer for the CLI; use as a context manager around the operation."""

    def __init__(self, ctx: Context, title: str) -> None:
        self.ctx, self.title = ctx, title
        self._stack = ExitStack()
        self._shown: Progress = Progress()

    def __enter__(self) -> StepView:
        if self.ctx.trace:
            self.ctx.err.write(f"{self.title}\n")
        else:
            self._shown = self._stack.enter_context(progress(self.ctx, self.title))
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        self._stack.close()

    def step_started(self, index: int, total: int, name: str) -> None:
        self._shown.note(f"{name} ({index + 1}/{total})")

    def step_done(self, name: str, seconds: float, note: str | None) -> None:
        if self.ctx.trace:
            self.ctx.err.write(f"  {name:<36} {seconds * 1000:8.1f} ms  {note or ''}".rstrip() + "\n")

    def step_undone(self, name: str, error: BaseException | None) -> None:
        if self.ctx.trace:
            self.ctx.err.write(f"  undo {name:<31} {'failed: ' + str(error).splitlines()[0] if error else 'done'}\n")
