"""Pure parsers of `xl` output (Xen 4.17, Debian bookworm), tested on captured output.

Every function takes the command's text and returns data or raises
``XeError("HYPERVISOR_ERROR", operation, domid, reason)`` naming what was wrong with the input;
none of them runs anything. Formats (tools/xl/xl_info.c, xl_vcpu.c, xl_sched.c):

- `xl info`: ``key<padding>: value`` lines; memory in MiB.
- `xl list [-v]`: a header, then ``name id mem vcpus flags time [uuid reason-code seclabel]``;
  mem in MiB; flags are six characters r b p s <reason letter> d.
- `xl list -l`: a JSON array of ``{"domid": N, "config": <libxl_domain_config>}``; it carries the
  configuration only (type, uuid, name, memory), not the run state.
- `xl vcpu-list`, `xl sched-credit2` / `xl sched-credit`: fixed columns under a header.
"""

from __future__ import annotations

import json
import re

from xetool.backends.base import DomainInfo, PhysInfo
from xetool.errors import XeError
from xetool.records import record, replace

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

# the fifth flag of `xl list`: Xen's shutdown codes 0..5 (SHUTDOWN_* in sched.h); "-" is 0
SHUTDOWN_REASON_LETTERS = "-rscwS"
SHUTDOWN_REASONS = ("poweroff", "reboot", "suspend", "crash", "watchdog", "soft_reset")
SHUTDOWN_CODES = {name: code for code, name in enumerate(SHUTDOWN_REASONS)} | {"halt": 0}

_FLAGS_RE = r"[r-][b-][p-][s-][-rscwS][d-]"
_LIST_ROW = re.compile(
    rf"^(?P<name>.+?)\s+(?P<domid>\d+)\s+(?P<mem>\d+)\s+(?P<vcpus>\d+)\s+(?P<flags>{_FLAGS_RE})\s+"
    r"(?P<time>\d+(?:\.\d+)?)(?:\s+(?P<uuid>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}))?"
    r"(?:\s+(?P<reason>\S+))?(?:\s+(?P<label>\S+))?\s*$"
)
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@record(frozen=True)
class DomainFlags:
    """The six state flags of one `xl list` row."""

    running: bool
    blocked: bool
    paused: bool
    shutdown: bool
    shutdown_reason: str | None  # set only when shutdown is
    dying: bool


@record(frozen=True)
class VcpuInfo:
    """One row of `xl vcpu-list`. Affinities are CPU numbers; None means "all"."""

    name: str
    domid: int
    vcpu: int
    cpu: int | None  # None when the vCPU is not running anywhere ("-")
    state: str  # "r--", "-b-", "--p" ... (running, blocked, offline/paused)
    time_s: float
    hard_affinity: tuple[int, ...] | None
    soft_affinity: tuple[int, ...] | None


@record(frozen=True)
class SchedParams:
    """One domain row of `xl sched-credit2` or `xl sched-credit`."""

    name: str
    domid: int
    weight: int
    cap: int
    cpupool: str


def _bad(operation: str, reason: str, domid: object = "") -> XeError:
    return XeError("HYPERVISOR_ERROR", operation, domid, reason)


def _int(value: str, operation: str, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _bad(operation, f"{what} is not a number: {value!r}") from None


# --- xl info ------------------------------------------------------------------------------------


def parse_xl_info(text: str) -> dict[str, str]:
    """`xl info` as a key -> value mapping (values stripped, may contain ':')."""
    info: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep or not key.strip() or " " in key.strip():
            raise _bad("xl info", f"unexpected line: {line[:80]!r}")
        info[key.strip()] = value.strip()
    return info


def physinfo_from_xl_info(text: str) -> PhysInfo:
    """Total and free memory (MiB in `xl info`, KiB here), CPUs, virt_caps, Xen's version."""
    info = parse_xl_info(text)
    missing = [k for k in ("total_memory", "free_memory", "nr_cpus") if k not in info]
    if missing:
        raise _bad("xl info", f"missing {', '.join(missing)}")
    version = info.get("xen_version") or ".".join(
        v for v in (info.get("xen_major"), info.get("xen_minor")) if v
    ) + info.get("xen_extra", "")
    return PhysInfo(
        total_memory_kib=_int(info["total_memory"], "xl info", "total_memory") * 1024,
        free_memory_kib=_int(info["free_memory"], "xl info", "free_memory") * 1024,
        nr_cpus=_int(info["nr_cpus"], "xl info", "nr_cpus"),
        capabilities=frozenset(info.get("virt_caps", "").split()),
        xen_version=version,
    )


# --- xl list ------------------------------------------------------------------------------------


def parse_flags(flags: str) -> DomainFlags:
    """The six-character state column of `xl list`, e.g. "--ps-d" or "---sc-"."""
    if not re.fullmatch(_FLAGS_RE, flags):
        raise _bad("xl list", f"unexpected state flags {flags!r}")
    shutdown = flags[3] == "s"
    return DomainFlags(
        running=flags[0] == "r",
        blocked=flags[1] == "b",
        paused=flags[2] == "p",
        shutdown=shutdown,
        shutdown_reason=SHUTDOWN_REASONS[SHUTDOWN_REASON_LETTERS.index(flags[4])] if shutdown else None,
        dying=flags[5] == "d",
    )


def parse_xl_list(text: str, hvm_domids: frozenset[int] = frozenset()) -> list[DomainInfo]:
    """`xl list` or `xl list -v` text. The text has no domain type: pass the domids known to be
    HVM (from `xl list -l`). Without -v the uuid is empty."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("Name"):
        raise _bad("xl list", "no header line" if not lines else f"unexpected header {lines[0][:80]!r}")
    domains = []
    for line in lines[1:]:
        m = _LIST_ROW.match(line)
        if not m:
            raise _bad("xl list", f"unexpected row {line[:100]!r}")
        flags = parse_flags(m["flags"])
        domid = int(m["domid"])
        domains.append(
            DomainInfo(
                domid=domid,
                uuid=m["uuid"] or "",
                name=m["name"].strip(),
                memory_kib=int(m["mem"]) * 1024,
                vcpus=int(m["vcpus"]),
                paused=flags.paused,
                hvm=domid in hvm_domids,
                shutdown_reason=flags.shutdown_reason,
                dying=flags.dying,
            )
        )
    return domains


def _config_of(entry: Any, index: int) -> tuple[int, Mapping[str, Any]]:
    if not isinstance(entry, dict) or "domid" not in entry or not isinstance(entry.get("config"), dict):
        raise _bad("xl list -l", f"entry {index} is not {{domid, config}}")
    domid = entry["domid"]
    if not isinstance(domid, int):
        raise _bad("xl list -l", f"entry {index}: domid {domid!r} is not an integer")
    return domid, entry["config"]


def parse_xl_list_json(text: str) -> dict[int, Mapping[str, Any]]:
    """`xl list -l` JSON: domid -> its libxl_domain_config (c_info, b_info, disks, nics, ...)."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise _bad("xl list -l", f"not JSON ({e}); is xl.conf output_format set to sxp?") from None
    if not isinstance(data, list):
        raise _bad("xl list -l", f"expected a JSON array, got {type(data).__name__}")
    return dict(_config_of(entry, i) for i, entry in enumerate(data))


def domain_type(config: Mapping[str, Any]) -> str:
    """"pv", "hvm" or "pvh" from a libxl_domain_config (c_info.type)."""
    c_info = config.get("c_info")
    kind = c_info.get("type") if isinstance(c_info, dict) else None
    if kind not in ("pv", "hvm", "pvh"):
        raise _bad("xl list -l", f"c_info.type is {kind!r}")
    return str(kind)


def domains_from_xl_list(
    text: str, configs: Mapping[int, Mapping[str, Any]] | None = None
) -> list[DomainInfo]:
    """`xl list -v` rows (run state) completed by `xl list -l` configs (type, uuid).

    The JSON alone lacks the run state and the text alone lacks the type, so both are read;
    with ``configs`` None (the JSON could not be had) every domain is reported as PV."""
    configs = configs or {}
    hvm = frozenset(d for d, c in configs.items() if domain_type(c) == "hvm")
    domains = parse_xl_list(text, hvm)
    out = []
    for dom in domains:
        c_info = configs.get(dom.domid, {}).get("c_info", {})
        uuid = dom.uuid or (c_info.get("uuid", "") if isinstance(c_info, dict) else "")
        if uuid and not _UUID_RE.match(uuid):
            raise _bad("xl list -l", f"domain {dom.domid}: bad uuid {uuid!r}")
        out.append(dom if uuid == dom.uuid else replace(dom, uuid=uuid))
    return out


# --- xl vcpu-list -------------------------------------------------------------------------------

_VCPU_ROW = re.compile(
    r"^(?P<name>.+?)\s+(?P<domid>\d+)\s+(?P<vcpu>\d+)\s+(?P<cpu>\d+|-)\s+(?P<state>[r-][b-][p-])\s+"
    r"(?P<time>\d+(?:\.\d+)?)\s+(?P<hard>\S+)\s*/\s*(?P<soft>\S+)\s*$"
)


def parse_cpumap(text: str) -> tuple[int, ...] | None:
    """An xl CPU list ("all", "any cpu", "none", "0-3,6") as CPU numbers; None for all."""
    text = text.strip()
    if text in ("all", "any cpu"):
        return None
    if text == "none":
        return ()
    cpus: list[int] = []
    for part in text.split(","):
        lo, dash, hi = part.partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()):
            raise _bad("xl vcpu-list", f"unexpected cpu list {text!r}")
        cpus.extend(range(int(lo), int(hi if dash else lo) + 1))
    return tuple(cpus)


def parse_vcpu_list(text: str) -> list[VcpuInfo]:
    """`xl vcpu-list [D]`: one VcpuInfo per vCPU of every listed domain."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("Name"):
        raise _bad("xl vcpu-list", "no header line")
    out = []
    for line in lines[1:]:
        m = _VCPU_ROW.match(line)
        if not m:
            raise _bad("xl vcpu-list", f"unexpected row {line[:100]!r}")
        out.append(
            VcpuInfo(
                name=m["name"].strip(),
                domid=int(m["domid"]),
                vcpu=int(m["vcpu"]),
                cpu=None if m["cpu"] == "-" else int(m["cpu"]),
                state=m["state"],
                time_s=float(m["time"]),
                hard_affinity=parse_cpumap(m["hard"]),
                soft_affinity=parse_cpumap(m["soft"]),
            )
        )
    return out


# --- xl sched-credit2 / sched-credit ------------------------------------------------------------

_POOL_LINE = re.compile(r"^Cpupool (?P<pool>\S+):")
_SCHED_ROW = re.compile(r"^(?P<name>.+?)\s+(?P<domid>\d+)\s+(?P<weight>\d+)\s+(?P<cap>\d+)\s*$")


def parse_sched_params(text: str) -> list[SchedParams]:
    """`xl sched-credit2 [-d D]` or `xl sched-credit [-d D]`: weight and cap per domain.

    Without -d the output has one "Cpupool P: ..." line and a header per pool; with -d it is a
    header and one row (the pool is then unknown: "")."""
    pool = ""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        m = _POOL_LINE.match(line)
        if m:
            pool = m["pool"]
            continue
        if line.startswith("Name"):
            continue
        r = _SCHED_ROW.match(line)
        if not r:
            raise _bad("xl sched", f"unexpected row {line[:100]!r}")
        out.append(SchedParams(r["name"].strip(), int(r["domid"]), int(r["weight"]), int(r["cap"]), pool))
    if not out:
        raise _bad("xl sched", "no domain rows")
    return out


def parse_domid(text: str, name: str) -> int:
    """`xl domid NAME`: a bare number."""
    value = text.strip()
    if not value.isdigit():
        raise _bad("xl domid", f"no domid for {name!r} in {value[:80]!r}")
    return int(value)
