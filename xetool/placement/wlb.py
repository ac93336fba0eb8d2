"""Workload balancing: an external recommender asked first, when the pool has one.

The recommender is a command (argv; the request as JSON on stdin, the answer as JSON on stdout,
exit 0) or an HTTP URL (the request POSTed as JSON, the answer in a 2xx body), bounded by
`WlbConfig.timeout` seconds in both cases. The request (`wlb_request`, "version": 1):

    {"version": 1, "request": "vm-start",
     "vm":   {"uuid", "name_label", "hvm", "vcpus_max", "vcpus_at_startup", "affinity",
              "memory": {"static_min", "static_max", "dynamic_min", "dynamic_max",
                         "overhead", "start"}, "required_srs", "required_networks",
              "ha_restart_priority"},
     "pool": {"ha": {"enabled", "host_failures_to_tolerate", "allow_overcommit"},
              "hosts": [{"uuid", "name_label", "enabled", "live", "is_master", "cpus",
                         "capabilities", "memory_total", "memory_overhead", "memory_free",
                         "resident_vms", "srs", "networks"}]}}

(memory in bytes; memory_free is with maximum compression). The answer:

    {"recommendations": [{"host": uuid, "score": number, "reason": str|null}, ...]}

or {"error": "text"} to decline. Every recommended host is re-checked with the same checks as
the default chooser; a failing one becomes impossible, with the reason. The highest valid score
wins. A recommender that fails, times out or answers garbage gives a `WlbWarning` (the caller
records a WLB_CONSULTATION_FAILED message) and the default chooser decides. Proxies from the
environment are not used: the recommender lives on the pool's own network.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

from xetool.errors import XeError
from xetool.placement.checks import VmFacts, describe, first_failure
from xetool.placement.choose import Placement, choose_host_for_vm
from xetool.placement.memory import host_compute_free_memory_with_maximum_compression, stored_overhead
from xetool.placement.report import TryStep
from xetool.placement.snapshot import PoolView, VmView, WlbConfig
from xetool.records import record

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from typing import Any

    from xetool.placement.choose import RandomSource

MAX_ANSWER = 16 * 1024 * 1024  # bytes read from a recommender before it counts as garbage
CONSULTATION_FAILED = "WLB_CONSULTATION_FAILED"  # the message name, with xapi's priority
CONSULTATION_FAILED_PRIORITY = 3


@record(frozen=True)
class Recommendation:
    host: str
    score: float
    reason: str | None = None
    impossible: bool = False  # the host failed a check (or is unknown); `reason` says why
    error: XeError | None = None

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "score": self.score, "reason": self.reason, "impossible": self.impossible}


@record(frozen=True)
class WlbWarning:
    """Why the recommender was not used; the placement fell back to the default chooser."""

    error: XeError  # WLB_TIMEOUT or WLB_INTERNAL_ERROR, with its parameters

    @property
    def name(self) -> str:
        return CONSULTATION_FAILED

    @property
    def priority(self) -> int:
        return CONSULTATION_FAILED_PRIORITY

    @property
    def message(self) -> str:
        detail = "; ".join(f"{k}: {v}" for k, v in self.error.params.items())
        return f"Workload balancing was not used ({self.error.code}: {detail}); the default placement decided."


@record(frozen=True)
class WlbPlacement:
    placement: Placement
    recommendations: tuple[Recommendation, ...] = ()
    warning: WlbWarning | None = None


def wlb_request(vm: VmView, pool: PoolView) -> dict[str, Any]:
    facts = VmFacts.of(vm)
    hosts = []
    for h in pool.hosts:
        load = pool.load_without(h.uuid, vm)
        hosts.append({
            "uuid": h.uuid, "name_label": h.name_label, "enabled": h.enabled, "live": h.live,
            "is_master": h.is_master, "cpus": h.cpus, "capabilities": sorted(h.capabilities),
            "memory_total": h.memory_total, "memory_overhead": h.memory_overhead,
            "memory_free": host_compute_free_memory_with_maximum_compression(h, load),
            "resident_vms": load.count, "srs": sorted(h.srs), "networks": sorted(h.networks),
        })
    return {
        "version": 1,
        "request": "vm-start",
        "vm": {
            "uuid": vm.uuid, "name_label": vm.name_label, "hvm": vm.hvm,
            "vcpus_max": vm.vcpus_max, "vcpus_at_startup": vm.vcpus_at_startup, "affinity": vm.affinity,
            "memory": {
                "static_min": vm.memory_static_min, "static_max": vm.memory_static_max,
                "dynamic_min": vm.memory_dynamic_min, "dynamic_max": vm.memory_dynamic_max,
                "overhead": stored_overhead(vm), "start": facts.start_memory,
            },
            "required_srs": list(vm.required_srs), "required_networks": list(vm.required_networks),
            "ha_restart_priority": vm.ha_restart_priority,
        },
        "pool": {
            "ha": {"enabled": pool.ha_enabled, "host_failures_to_tolerate": pool.ha_host_failures_to_tolerate,
                   "allow_overcommit": pool.ha_allow_overcommit},
            "hosts": hosts,
        },
    }


def _internal(reason: str) -> XeError:
    return XeError("WLB_INTERNAL_ERROR", reason)


def _call_command(argv: tuple[str, ...], payload: bytes, timeout: float) -> bytes:
    try:
        # Its own session, so a timeout can kill the recommender and anything it started.
        proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
    except OSError as e:
        raise _internal(f"cannot run {argv[0]}: {e.strerror or e}") from None
    try:
        out, err = proc.communicate(payload, timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        raise XeError("WLB_TIMEOUT", timeout) from None
    if proc.returncode != 0:
        tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        raise _internal(f"recommender exited with status {proc.returncode}: {tail[0][:200]}")
    return out


_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _call_url(url: str, payload: bytes, timeout: float) -> bytes:
    req = urllib.request.Request(url, data=payload, method="POST",
                                 headers={"Content-Type": "application/json", "Accept": "application/json"})
    deadline = time.monotonic() + timeout
    try:
        with _NO_PROXY_OPENER.open(req, timeout=timeout) as resp:
            chunks: list[bytes] = []
            size = 0
            while True:
                # The socket timeout bounds each read; the deadline bounds a slow trickle.
                if time.monotonic() > deadline:
                    raise XeError("WLB_TIMEOUT", timeout)
                chunk = resp.read(65536)
                if not chunk:
                    return b"".join(chunks)
                size += len(chunk)
                if size > MAX_ANSWER:
                    raise _internal(f"answer larger than {MAX_ANSWER} bytes")
                chunks.append(chunk)
    except urllib.error.HTTPError as e:
        e.close()  # it holds the response's socket
        raise _internal(f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, (socket.timeout, TimeoutError)):
            raise XeError("WLB_TIMEOUT", timeout) from None
        raise _internal(f"cannot reach {url}: {e.reason}") from None
    except (socket.timeout, TimeoutError):
        raise XeError("WLB_TIMEOUT", timeout) from None
    except (OSError, http.client.HTTPException) as e:
        raise _internal(f"HTTP exchange with {url} failed: {e}") from None


def _score(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def parse_answer(raw: bytes) -> list[Recommendation]:
    """The recommender's answer as recommendations, or WLB_INTERNAL_ERROR saying what is wrong."""
    if len(raw) > MAX_ANSWER:
        raise _internal(f"answer larger than {MAX_ANSWER} bytes")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _internal(f"answer is not JSON: {raw[:80]!r}") from None
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        raise _internal(f"recommender declined: {doc['error'][:200]}")
    recs = doc.get("recommendations") if isinstance(doc, dict) else None
    if not isinstance(recs, list):
        raise _internal("answer has no 'recommendations' list")
    out = []
    for i, r in enumerate(recs):
        if not isinstance(r, dict) or not isinstance(r.get("host"), str):
            raise _internal(f"recommendation {i} has no 'host' string")
        score = _score(r.get("score"))
        if score is None:
            raise _internal(f"recommendation {i} has no finite numeric 'score'")
        reason = r.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise _internal(f"recommendation {i} has a 'reason' that is not a string")
        out.append(Recommendation(r["host"], score, reason))
    return out


def retrieve_wlb_recommendations(vm: VmView, pool: PoolView, config: WlbConfig | None = None) -> list[Recommendation]:
    """Ask the recommender and re-check each host it names (`vm-retrieve-wlb-recommendations`).
    Raises WLB_TIMEOUT or WLB_INTERNAL_ERROR; best score first, impossible ones last."""
    config = config or pool.wlb
    if config is None or not (config.command or config.url):
        raise _internal("workload balancing is not configured")
    payload = json.dumps(wlb_request(vm, pool)).encode()
    if config.command:
        raw = _call_command(config.command, payload, config.timeout)
    else:
        raw = _call_url(config.url, payload, config.timeout)
    facts = VmFacts.of(vm)
    checked = []
    for rec in parse_answer(raw):
        host = pool.host(rec.host)
        if host is None:
            checked.append(Recommendation(rec.host, rec.score, "Unknown host", True))
            continue
        err = first_failure(facts, host, pool)
        if err is not None:
            checked.append(Recommendation(rec.host, rec.score, describe(err, pool), True, err))
        else:
            checked.append(rec)
    # Stable: equal scores keep the recommender's order.
    return sorted(checked, key=lambda r: (r.impossible, -r.score))


def choose_host_with_wlb(vm: VmView, pool: PoolView, rng: RandomSource | None = None) -> WlbPlacement:
    """choose_host_for_vm as xapi's: the recommender first when active, else or on any failure
    the default chooser (whose errors, NO_HOSTS_AVAILABLE included, propagate)."""
    facts = VmFacts.of(vm)
    if facts.invalid is not None:
        raise facts.invalid
    config = pool.wlb
    if config is None or not config.active:
        return WlbPlacement(choose_host_for_vm(vm, pool, rng))
    try:
        recs = retrieve_wlb_recommendations(vm, pool, config)
    except XeError as e:
        return WlbPlacement(choose_host_for_vm(vm, pool, rng), warning=WlbWarning(e))
    best = next((r for r in recs if not r.impossible), None)
    if best is None:
        warning = WlbWarning(_internal("no recommended host can run the VM"))
        return WlbPlacement(choose_host_for_vm(vm, pool, rng), tuple(recs), warning)
    host = pool.host(best.host)
    assert host is not None  # re-checked above
    return WlbPlacement(Placement(host, "wlb", (TryStep(host.uuid, "wlb"),)), tuple(recs))
