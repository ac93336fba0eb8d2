"""How a long operation's named steps look on the command line: --trace prints each step with
its duration and note on stderr; on a terminal the progress display names the current step;
otherwise nothing decorative is printed."""

from __future__ import annotations

from contextlib import ExitStack
from types import TracebackType

from xetool.cli.context import Context
from xetool.cli.progress import Progress, progress


NAME_WIDTH = 38  # the tree's guides count in it, so durations line up at every depth


class StepView:
    """A steps.Observer for the CLI; use as a context manager around the operation.

    Steps run inside a step (the host half's, inside the master's execute_on_host) print as a
    tree under it: the parent's name when its first child starts, the children behind a guide,
    then the parent's own line with its whole duration."""

    def __init__(self, ctx: Context, title: str) -> None:
        self.ctx, self.title = ctx, title
        self._stack = ExitStack()
        self._shown: Progress = Progress()
        # each step still running, outermost first, and whether its name was printed as a header
        self._open: list[str] = []
        self._headed: list[bool] = []

    def __enter__(self) -> StepView:
        if self.ctx.trace:
            self.ctx.err.write(f"{self.title}\n")
        else:
            self._shown = self._stack.enter_context(progress(self.ctx, self.title))
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        self._stack.close()

    def _write(self, guides: str, name: str, seconds: float | None, note: str) -> None:
        label = f"  {guides}{name}".ljust(NAME_WIDTH + 2)
        took = f"{seconds * 1000:8.1f} ms" if seconds is not None else " " * 11
        self.ctx.err.write(f"{label} {took}  {note}".rstrip() + "\n")

    def step_started(self, index: int, total: int, name: str) -> None:
        path = " > ".join([*self._open, name])
        self._shown.note(f"{path} ({index + 1}/{total})")
        if self.ctx.trace and self._open and not self._headed[-1]:
            self._headed[-1] = True
            self._write("│ " * (len(self._open) - 1), self._open[-1], None, "")
        self._open.append(name)
        self._headed.append(False)

    def _close(self, name: str, seconds: float, note: str) -> None:
        had_children = False
        if self._open and self._open[-1] == name:
            self._open.pop()
            had_children = self._headed.pop()
        if self.ctx.trace:
            self._write("│ " * len(self._open) + ("└ " if had_children else ""), name, seconds, note)

    def step_done(self, name: str, seconds: float, note: str | None) -> None:
        self._close(name, seconds, note or "")

    def step_failed(self, name: str, seconds: float, error: BaseException) -> None:
        code = getattr(error, "code", None) or type(error).__name__
        self._close(name, seconds, f"failed: {code}")

    def step_undone(self, name: str, error: BaseException | None) -> None:
        if self.ctx.trace:
            outcome = "failed: " + str(error).splitlines()[0] if error else "done"
            self._write("│ " * len(self._open), f"undo {name}", None, outcome)
