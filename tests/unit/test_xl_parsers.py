"""The xl parsers on output captured from Debian's Xen 4.17 in the lab (tests/data/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from xetool.backends.xen import parsers
from xetool.errors import XeError

DATA = Path(__file__).resolve().parents[1] / "data"
DOM0_UUID = "00000000-0000-0000-0000-000000000000"
PAUSED_UUID = "4d181961-b175-487b-b67b-bef0f77d0ffc"


def data(name: str) -> str:
    return (DATA / name).read_text()


def test_physinfo_from_xl_info() -> None:
    info = parsers.physinfo_from_xl_info(data("xl-info.txt"))
    assert info.total_memory_kib == 2047 * 1024
    assert info.free_memory_kib == 1000 * 1024
    assert info.nr_cpus == 2
    assert info.capabilities == {"pv", "hvm", "hap", "gnttab-v1", "gnttab-v2"}
    assert info.xen_version == "4.17.7"


def test_xl_info_keeps_values_with_colons() -> None:
    info = parsers.parse_xl_info(data("xl-info.txt"))
    assert info["cc_compile_date"] == "Wed Nov  4 16:52:28 UTC 2026"
    assert info["xen_scheduler"] == "credit2"
    assert info["xen_changeset"] == ""


def test_xl_info_without_xen_version_is_assembled() -> None:
    text = "total_memory : 10\nfree_memory : 5\nnr_cpus : 1\nxen_major : 4\nxen_minor : 17\nxen_extra : .7\n"
    assert parsers.physinfo_from_xl_info(text).xen_version == "4.17.7"


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "missing total_memory, free_memory, nr_cpus"),
        ("total_memory : 1\nfree_memory : 1\n", "missing nr_cpus"),
        ("total_memory : lots\nfree_memory : 1\nnr_cpus : 1\n", "total_memory is not a number"),
        ("total_memory 10\n", "unexpected line"),
    ],
)
def test_bad_xl_info_is_a_hypervisor_error(text: str, reason: str) -> None:
    with pytest.raises(XeError) as e:
        parsers.physinfo_from_xl_info(text)
    assert e.value.code == "HYPERVISOR_ERROR"
    assert reason in e.value.params["reason"]


def test_xl_list_dom0_only() -> None:
    (dom0,) = parsers.parse_xl_list(data("xl-list-dom0.txt"))
    assert (dom0.domid, dom0.name, dom0.memory_kib, dom0.vcpus) == (0, "Domain-0", 1024 * 1024, 2)
    assert not dom0.paused and dom0.shutdown_reason is None and not dom0.dying
    assert dom0.uuid == ""  # plain `xl list` has no uuid column


def test_xl_list_v_paused_guest() -> None:
    dom0, guest = parsers.parse_xl_list(data("xl-list-v-paused.txt"))
    assert dom0.uuid == DOM0_UUID
    assert (guest.domid, guest.name, guest.uuid) == (1, "capture-paused", PAUSED_UUID)
    assert guest.paused and guest.memory_kib == 128 * 1024 and guest.vcpus == 1


def test_xl_list_running_guest() -> None:
    domains = parsers.parse_xl_list(data("xl-list-v-running.txt"))
    running = next(d for d in domains if d.name == "capture-running")
    assert not running.paused and running.shutdown_reason is None


def test_xl_list_shutdown_reasons() -> None:
    by_name = {d.name: d for d in parsers.parse_xl_list(data("xl-list-v-shutdown.txt"))}
    assert by_name["capture-running"].shutdown_reason == "poweroff"
    crashed = {d.name: d for d in parsers.parse_xl_list(data("xl-list-crashed.txt"))}
    assert crashed["capture-paused"].shutdown_reason == "crash"


@pytest.mark.parametrize(
    "flags, expected",
    [
        ("r-----", (True, False, False, None, False)),
        ("-b----", (False, False, False, None, False)),
        ("--p---", (False, True, False, None, False)),
        ("---s--", (False, False, True, "poweroff", False)),
        ("---sr-", (False, False, True, "reboot", False)),
        ("--psc-", (False, True, True, "crash", False)),
        ("---sw-", (False, False, True, "watchdog", False)),
        ("-----d", (False, False, False, None, True)),
    ],
)
def test_parse_flags(flags: str, expected: tuple[object, ...]) -> None:
    f = parsers.parse_flags(flags)
    assert (f.running, f.paused, f.shutdown, f.shutdown_reason, f.dying) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage\n",
        "Name ID Mem VCPUs State Time(s)\nDomain-0 0 1024 2 r-- 1.0\n",  # five flags
        "Name ID Mem VCPUs State Time(s)\nDomain-0 zero 1024 2 r----- 1.0\n",
    ],
)
def test_bad_xl_list_is_a_hypervisor_error(text: str) -> None:
    with pytest.raises(XeError) as e:
        parsers.parse_xl_list(text)
    assert e.value.code == "HYPERVISOR_ERROR" and e.value.params["operation"] == "xl list"


def test_xl_list_json_configs() -> None:
    configs = parsers.parse_xl_list_json(data("xl-list-l-paused.json"))
    assert sorted(configs) == [0, 1]
    assert parsers.domain_type(configs[1]) == "pv"
    assert configs[1]["c_info"]["uuid"] == PAUSED_UUID
    assert configs[1]["b_info"]["max_memkb"] == 256 * 1024
    assert configs[1]["b_info"]["target_memkb"] == 128 * 1024


def test_domains_from_text_and_json() -> None:
    configs = parsers.parse_xl_list_json(data("xl-list-l-paused.json"))
    domains = parsers.domains_from_xl_list(data("xl-list-paused.txt"), configs)
    guest = next(d for d in domains if d.domid == 1)
    assert guest.uuid == PAUSED_UUID and guest.paused and not guest.hvm


def test_json_marks_hvm_domains() -> None:
    configs = parsers.parse_xl_list_json(data("xl-list-l-paused.json"))
    hvm = {**configs, 1: {**configs[1], "c_info": {**configs[1]["c_info"], "type": "hvm"}}}
    domains = parsers.domains_from_xl_list(data("xl-list-v-paused.txt"), hvm)
    assert [d.hvm for d in domains] == [False, True]


@pytest.mark.parametrize(
    "text, reason",
    [
        ("(domain (domid 0))", "not JSON"),
        ('{"domid": 0}', "expected a JSON array"),
        ('[{"domid": 0}]', "entry 0"),
        ('[{"domid": "0", "config": {}}]', "not an integer"),
    ],
)
def test_bad_xl_list_json(text: str, reason: str) -> None:
    with pytest.raises(XeError) as e:
        parsers.parse_xl_list_json(text)
    assert reason in e.value.params["reason"]


def test_vcpu_list_paused_and_pinned() -> None:
    rows = parsers.parse_vcpu_list(data("xl-vcpu-list-paused.txt"))
    assert [(r.domid, r.vcpu) for r in rows] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    offline = rows[3]
    assert offline.cpu is None and offline.state == "--p" and offline.hard_affinity is None
    pinned = parsers.parse_vcpu_list(data("xl-vcpu-list-pinned.txt"))
    assert pinned[0].hard_affinity == (1,) and pinned[0].soft_affinity is None


@pytest.mark.parametrize(
    "text, cpus", [("all", None), ("any cpu", None), ("none", ()), ("0-2,5", (0, 1, 2, 5)), ("3", (3,))]
)
def test_parse_cpumap(text: str, cpus: tuple[int, ...] | None) -> None:
    assert parsers.parse_cpumap(text) == cpus


def test_bad_cpumap() -> None:
    with pytest.raises(XeError):
        parsers.parse_cpumap("0-x")


def test_sched_credit2_all_and_one() -> None:
    rows = parsers.parse_sched_params(data("xl-sched-credit2-all.txt"))
    assert [(r.name, r.domid, r.weight, r.cap, r.cpupool) for r in rows] == [
        ("Domain-0", 0, 256, 0, "Pool-0"),
        ("capture-paused", 1, 512, 50, "Pool-0"),
    ]
    (one,) = parsers.parse_sched_params(data("xl-sched-credit2-guest.txt"))
    assert (one.weight, one.cap, one.cpupool) == (512, 50, "")


def test_sched_credit_format() -> None:
    text = "Cpupool Pool-0: tslice=30ms ratelimit=1000us migr_delay=0us\nName ID Weight  Cap\nDomain-0 0 256 0\n"
    (row,) = parsers.parse_sched_params(text)
    assert (row.weight, row.cap, row.cpupool) == (256, 0, "Pool-0")


def test_bad_sched_output() -> None:
    with pytest.raises(XeError):
        parsers.parse_sched_params("Name ID Weight Cap\n")
    with pytest.raises(XeError):
        parsers.parse_sched_params("Name ID Weight Cap\nDomain-0 0 heavy 0\n")


def test_parse_domid() -> None:
    assert parsers.parse_domid("7\n", "g") == 7
    with pytest.raises(XeError):
        parsers.parse_domid("", "g")
