"""Progress of long operations, for the person at the terminal.

    with progress(ctx, "Starting web01", ["choose host", "reserve memory", "build domain"]) as p:
        p.step("choose host")
        ...
        p.step("reserve memory")

    with progress(ctx, "Starting 3 VMs", 3) as p:   # --multiple: one step per object
        for vm in vms:
            p.step(vm["name_label"])

On stderr, and only when stderr is a terminal and the output is xe's (not --quiet, not --format
json): a spinner, the title, the current step and, when the steps are known, a bar. The display is
transient, so nothing of it stays in the scrollback and nothing at all reaches a pipe, a file or
cron's mail. NO_COLOR drops the colours (rich also reads it), not the display. rich is imported
only when something is shown, so scripts do not pay for it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from typing import Any

    from xetool.cli.context import Context


class Progress:
    """What a long operation reports to; this base class shows nothing."""

    def step(self, name: str) -> None:
        """Begin the named step (the previous one is done)."""

    def note(self, text: str) -> None:
        """Change the text shown after the title without counting a step (a wait, a retry)."""


class _Shown(Progress):
    def __init__(self, bar: Any, task: Any, title: str, steps: Sequence[str]) -> None:
        self._bar, self._task, self._title, self._steps = bar, task, title, list(steps)
        self._done = -1  # steps finished before the current one

    def step(self, name: str) -> None:
        index = self._steps.index(name) if name in self._steps else self._done + 1
        self._done = max(self._done, index)
        # drawn now, not at the next tick: a quick step is still seen (and tests can see it)
        self._bar.update(self._task, completed=index, description=f"{self._title}: {name}", refresh=True)

    def note(self, text: str) -> None:
        self._bar.update(self._task, description=f"{self._title}: {text}", refresh=True)

    def finish(self) -> None:
        total = self._bar.tasks[0].total
        if total is not None:
            self._bar.update(self._task, completed=total)


@contextmanager
def progress(ctx: Context, title: str, steps: Sequence[str] | int | None = None) -> Iterator[Progress]:
    """Show `title` and the current step on stderr while the block runs, if anyone is watching.

    `steps` is the list of step names (a bar that knows where it is), a count of steps (one per
    object under --multiple), or None (a spinner only)."""
    if not ctx.interactive:
        yield Progress()
        return
    from rich.console import Console
    from rich.progress import BarColumn, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    names = list(steps) if isinstance(steps, Sequence) and not isinstance(steps, str) else []
    total = len(names) if names else steps if isinstance(steps, int) else None
    console = Console(file=ctx.err, no_color=not ctx.color, highlight=False)
    columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(bar_width=24), TaskProgressColumn()]
    columns.append(TimeElapsedColumn())
    with Bar(*columns, console=console, transient=True) as bar:
        shown = _Shown(bar, bar.add_task(title, total=total), title, names)
        yield shown
        shown.finish()
