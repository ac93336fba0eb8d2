"""In-process hypercalls through Xen's own Python binding of libxenctrl (``xen.lowlevel.xc``,
shipped inside Debian's xen-utils-4.17, off ``sys.path``).

Why: every ``xl`` process costs 0.5-1 s under the lab's software emulation (and tens of ms on
real hardware), and the host half only needs a few read-only answers (free memory, the domains'
run states) plus PV pause/unpause, which libxl does with exactly these calls for a PV domain.
Domain creation and building stay with ``xl`` (libxl/libxenguest): xc has no domain builder.

Everything returns None when the binding is missing or fails, so that the caller can fall back
to ``xl``; nothing here raises.
"""

from __future__ import annotations

import sys
import uuid as uuidlib

from xetool.backends.base import DomainInfo, PhysInfo

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from typing import Any, Literal

XEN_TOOLS_PYTHON = "/usr/lib/xen-4.17/lib/python"
SHUTDOWN_REASONS = ("poweroff", "reboot", "suspend", "crash", "watchdog", "soft_reset")


def preload(tools_python: str = XEN_TOOLS_PYTHON) -> None:
    """Import the binding without opening a handle (for the host's long-running agent, whose
    forks then each open their own): nothing if it is not there."""
    try:
        if tools_python not in sys.path:
            sys.path.append(tools_python)
        import xen.lowlevel.xc  # noqa: F401
    except Exception:  # no binding here: the requests fall back to xl
        pass


class Hypercalls:
    """A lazily opened ``xc.xc()`` handle (one per backend object)."""

    def __init__(self, tools_python: str = XEN_TOOLS_PYTHON) -> None:
        self._path = tools_python
        self._xc: Any = None
        self._tried = False

    def handle(self) -> Any:
        if not self._tried:
            self._tried = True
            try:
                if self._path not in sys.path:
                    sys.path.append(self._path)
                from xen.lowlevel import xc

                self._xc = xc.xc()
            except Exception:  # no binding, wrong Python, or no hypervisor: use xl instead
                self._xc = None
        return self._xc

    def physinfo(self) -> PhysInfo | None:
        xc = self.handle()
        if xc is None:
            return None
        try:
            p, v = xc.physinfo(), xc.xeninfo()
            version = f"{v['xen_major']}.{v['xen_minor']}{v.get('xen_extra', '')}"
            return PhysInfo(total_memory_kib=int(p["total_memory"]), free_memory_kib=int(p["free_memory"]),
                            nr_cpus=int(p["nr_cpus"]), capabilities=frozenset(str(p.get("virt_caps", "")).split()),
                            xen_version=version)
        except Exception:
            return None

    def domain(self, domid: int) -> DomainInfo | None | Literal[False]:
        """The domain's run state (name left empty: it is xenstore's), None if there is no such
        domain, False if the hypercall could not be made."""
        xc = self.handle()
        if xc is None:
            return False
        try:
            found = xc.domain_getinfo(domid, 1)
        except Exception:
            return False
        if not found or found[0]["domid"] != domid:
            return None
        return info_from_xc(found[0])

    def domains(self) -> list[DomainInfo] | Literal[False]:
        """Every domain's run state (names left empty: xenstore's), or False if the hypercall
        could not be made: what `xl list` reports, without two xl processes."""
        xc = self.handle()
        if xc is None:
            return False
        try:
            return [info_from_xc(d) for d in xc.domain_getinfo(0, 1024)]
        except Exception:
            return False

    def set_paused(self, domid: int, paused: bool) -> bool:
        """Pause or unpause; True if done. For PV domains only: an HVM domain's device model must
        be told too, which is libxl's job (xl pause/unpause)."""
        xc = self.handle()
        if xc is None:
            return False
        try:
            (xc.domain_pause if paused else xc.domain_unpause)(domid)
            return True
        except Exception:
            return False


def info_from_xc(d: dict[str, Any]) -> DomainInfo:
    """A ``domain_getinfo`` entry as a DomainInfo (memory in KiB, online vCPUs, handle = uuid)."""
    reason = None
    if d.get("crashed"):
        reason = "crash"
    elif d.get("shutdown"):
        code = int(d.get("shutdown_reason", 0))
        reason = SHUTDOWN_REASONS[code] if 0 <= code < len(SHUTDOWN_REASONS) else str(code)
    handle = d.get("handle") or [0] * 16
    return DomainInfo(
        domid=int(d["domid"]), uuid=str(uuidlib.UUID(bytes=bytes(handle))), name="",
        memory_kib=int(d.get("mem_kb", 0)), vcpus=int(d.get("online_vcpus", 0)), paused=bool(d.get("paused")),
        hvm=bool(d.get("hvm")), shutdown_reason=reason, dying=bool(d.get("dying")),
    )
