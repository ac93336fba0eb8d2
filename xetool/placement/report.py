"""The explain table: every host, every check, pass or the reason; and the chooser's order.

Plain data plus plain-text lines; the CLI decides where they go (stdout for --dry-run and
vm-assert-can-boot-here, stderr before NO_HOSTS_AVAILABLE) and may render them with rich.
"""

from __future__ import annotations

from collections import Counter

from xetool.placement.checks import CheckResult
from xetool.records import record

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from typing import Any


@record(frozen=True)
class HostReport:
    uuid: str
    name_label: str
    checks: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if not c.passed)

    def to_json(self) -> dict[str, Any]:
        return {"host": self.uuid, "name_label": self.name_label, "ok": self.ok,
                "checks": [c.to_json() for c in self.checks]}


@record(frozen=True)
class TryStep:
    """One host in the chooser's order, with the memory category it was drawn from."""

    host: str
    category: str  # affinity | definite | probable | possible


@record(frozen=True)
class PlacementReport:
    vm: str
    hosts: tuple[HostReport, ...]  # in the pool's host order
    order: tuple[TryStep, ...] = ()  # the whole order, as if every host failed
    chosen: str | None = None  # the first host of `order` that passes every check

    def failure_counts(self) -> dict[str, int]:
        """Ganeti's one-line summary: how many hosts each check refused (first failure)."""
        counts = Counter(h.failures[0].name for h in self.hosts if not h.ok)
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def summary(self) -> str:
        counts = self.failure_counts()
        return ", ".join(f"{k}: {v}" for k, v in counts.items()) if counts else "every host passes"

    def never_tried(self) -> tuple[str, ...]:
        """Hosts outside every memory category: the chooser does not even try them."""
        tried = {s.host for s in self.order}
        return tuple(h.uuid for h in self.hosts if h.uuid not in tried)

    def table_lines(self) -> list[str]:
        """xe's per-host table: `<name> : OK` or `<name> : Cannot start here [reasons]`."""
        width = max((len(h.name_label or h.uuid) for h in self.hosts), default=0)
        out = []
        for h in self.hosts:
            label = (h.name_label or h.uuid).ljust(width)
            if h.ok:
                out.append(f"{label} : OK")
            else:
                out.append(f"{label} : Cannot start here [{'; '.join(c.reason or c.name for c in h.failures)}]")
        return out

    def no_hosts_lines(self) -> list[str]:
        """What goes to stderr before NO_HOSTS_AVAILABLE (xe's hook_no_hosts_available)."""
        return [
            "There are no suitable hosts to start this VM on.",
            "The following table provides per-host reasons for why the VM could not be started:",
            "",
            *self.table_lines(),
            "",
            f"Refused by: {self.summary()}",
        ]

    def order_lines(self) -> list[str]:
        names = {h.uuid: h.name_label or h.uuid for h in self.hosts}
        return [
            f"{i:>4}. {names.get(s.host, s.host)} ({s.category})" + ("  <- chosen" if s.host == self.chosen else "")
            for i, s in enumerate(self.order, 1)
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "vm": self.vm,
            "chosen": self.chosen,
            "order": [{"host": s.host, "category": s.category} for s in self.order],
            "never_tried": list(self.never_tried()),
            "refused_by": self.failure_counts(),
            "hosts": [h.to_json() for h in self.hosts],
        }
