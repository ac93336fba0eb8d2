"""Operations as ordered, named steps, each with its undo.

The runner does the steps in order, records what was done, and on any failure (an error, Ctrl-C)
undoes the done steps in reverse before re-raising: the seed's "failure paths involve attempts to
reverse previous steps". Each step may return a note saying what it did, or why it did nothing
(a step the seed names but that does not apply is still a step).

Fault injection, for the fault tests: XETOOL_FIST is a comma-separated list of `STEP` (fail
before the step), `STEP:fail-after` (fail once the step is done), `STEP:kill` (SIGKILL this
process before the step), `STEP:kill-after` or `STEP:delay=SECONDS` (wait before the step: a
window for a test to break something in, such as the host's link). A step may also name points inside itself
(`checkpoint("domain_created")`), which take `NAME:fail` and `NAME:kill` the same way: the
windows between a hypervisor call and its record.
"""

from __future__ import annotations

import os
import signal
import time

from xetool.errors import XeError
from xetool.records import field, record

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Protocol

    class Observer(Protocol):
        def step_started(self, index: int, total: int, name: str) -> None: ...

        def step_done(self, name: str, seconds: float, note: Note) -> None: ...

        def step_failed(self, name: str, seconds: float, error: BaseException) -> None: ...

        def step_undone(self, name: str, error: BaseException | None) -> None: ...


Note = str | None


@record(frozen=True)
class Step:
    name: str
    do: Callable[[], Note]
    undo: Callable[[], object] | None = None  # what an undo returns is ignored
    # A step after the operation has taken effect and been recorded (vm-start's VM_STARTED
    # message, its RRD push): its failure is reported in its note and undoes nothing, as xapi
    # ignores those failures too.
    best_effort: bool = False


def _fist() -> dict[str, str]:
    from xetool.host import env  # the request's plan on a host, this process's elsewhere

    spec = env.get("XETOOL_FIST") or ""
    out = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, how = item.partition(":")
        out[name] = how or "fail"
    return out


def _inject(name: str, when: str, plan: dict[str, str]) -> None:
    how = plan.get(name)
    if how is None:
        return
    if how.startswith("delay=") and not when:
        try:
            time.sleep(float(how[len("delay="):]))
        except ValueError:
            raise XeError("FIST", f"{name} (bad delay: {how})") from None
    if how == f"kill{when}":
        os.kill(os.getpid(), signal.SIGKILL)
    if how == f"fail{when}":
        raise XeError("FIST", name)


def checkpoint(name: str) -> None:
    """A named point inside a step where a fault test may fail or kill this process."""
    plan = _fist()
    if plan:
        _inject(name, "", plan)


@record
class Runner:
    observer: Observer | None = None
    done: list[Step] = field(default_factory=list)
    timings: list[tuple[str, float, Note]] = field(default_factory=list)
    ignored: list[tuple[str, Exception]] = field(default_factory=list)  # best-effort steps that failed

    def run(self, steps: Sequence[Step]) -> None:
        plan = _fist()
        try:
            for index, step in enumerate(steps):
                if self.observer:
                    self.observer.step_started(index, len(steps), step.name)
                started = time.perf_counter()
                try:
                    _inject(step.name, "", plan)
                    note = step.do()
                    if step.best_effort:
                        _inject(step.name, "-after", plan)
                except Exception as err:
                    if not step.best_effort:
                        self._failed(step.name, started, err)
                        raise
                    note = f"failed, ignored: {err.code if isinstance(err, XeError) else type(err).__name__}"
                    self.ignored.append((step.name, err))
                except BaseException as err:  # Ctrl-C: the step did not finish either
                    self._failed(step.name, started, err)
                    raise
                self.done.append(step)
                seconds = time.perf_counter() - started
                self.timings.append((step.name, seconds, note))
                if self.observer:
                    self.observer.step_done(step.name, seconds, note)
                if not step.best_effort:
                    _inject(step.name, "-after", plan)
        except BaseException:
            self.rollback()
            raise

    def _failed(self, name: str, started: float, err: BaseException) -> None:
        if self.observer:
            try:
                self.observer.step_failed(name, time.perf_counter() - started, err)
            except Exception:  # nosec: the step's own error is the one to report
                pass

    def rollback(self) -> None:
        """Undo what was done, newest first; an undo that fails does not stop the others."""
        while self.done:
            step = self.done.pop()
            if step.undo is None:
                continue
            error: BaseException | None = None
            try:
                step.undo()
            except Exception as err:  # keep undoing; the original error is what the user sees
                error = err
            if self.observer:
                try:
                    self.observer.step_undone(step.name, error)
                except Exception:  # nosec: a display that broke (a closed pipe) must not stop the undoing
                    pass
