"""Completion of map keys (from the pool database) and of `--` options, in a real bash."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.shell.test_completion_bash import NO_EQ_COLON, complete

PLATFORM = ["acpi", "apic", "nx", "pae", "viridian"]  # win01's, from examples/pool.toml


@pytest.mark.parametrize("command", ["vm-param-get", "vm-param-remove"])
def test_param_key_offers_the_keys_of_that_objects_map(pool: Path, vm_uuids: dict[str, str], command: str) -> None:
    win, web = vm_uuids["win01"], vm_uuids["web01"]
    line = f"xetool {command} uuid={win} param-name=platform param-key="
    assert complete(line, pool).replies == PLATFORM
    assert complete(line + "a", pool).replies == ["acpi", "apic"]
    assert complete(line + "a", pool, NO_EQ_COLON).replies == ["param-key=acpi", "param-key=apic"]
    assert complete(f"xetool {command} uuid={web} param-name=platform param-key=", pool).replies == []
    # no uuid yet: the keys any VM has in that map; no param-name: nothing to look in
    assert complete(f"xetool {command} param-name=platform param-key=", pool).replies == PLATFORM
    assert complete(f"xetool {command} uuid={win} param-key=", pool).replies == []


@pytest.mark.parametrize("command", ["vm-param-set uuid=x", "vm-list", "vm-start --multiple"])
def test_map_parameter_offers_its_keys(pool: Path, command: str) -> None:
    r = complete(f"xetool {command} platform:", pool)
    assert r.replies == [k + "=" for k in PLATFORM] and "-o nospace" in r.opts
    assert complete(f"xetool {command} platform:v", pool).replies == ["viridian="]
    assert complete(f"xetool {command} platform:v", pool, NO_EQ_COLON).replies == ["platform:viridian="]


def test_a_word_that_is_no_map_of_the_command_gets_no_keys(pool: Path) -> None:
    assert complete("xetool vm-param-set uuid=x name-label:", pool).replies == []
    assert complete("xetool host-enable platform:", pool).replies == []


@pytest.mark.parametrize("command, offered, not_offered", [
    ("vm-start", {"--minimal", "--format=", "--trace", "--multiple", "--force", "--wait", "--dry-run", "--paused"}, set()),
    ("vm-shutdown", {"--force", "--wait", "--multiple", "--trace"}, {"--dry-run", "--paused"}),
    ("vm-reboot", {"--force", "--wait", "--multiple"}, {"--dry-run"}),
    ("vm-pause", {"--wait", "--multiple"}, {"--force", "--dry-run"}),
    ("vm-unpause", {"--wait", "--multiple"}, {"--force"}),
    ("vm-destroy", {"--wait", "--minimal"}, {"--multiple", "--force"}),
    ("vm-list", {"--minimal", "--format="}, {"--force", "--wait", "--multiple", "--dry-run"}),
    ("pool-import", {"--dry-run", "--quiet"}, {"--wait", "--force"}),
])
def test_double_dash_options_as_each_command_accepts(pool: Path, command: str, offered: set[str],
                                                     not_offered: set[str]) -> None:
    replies = set(complete(f"xetool {command} --", pool).replies)
    assert offered <= replies and not (not_offered & replies)
    assert complete(f"xetool {command} --wa", pool).replies == (["--wait"] if "--wait" in offered else [])


def test_options_already_given_are_not_offered_again(pool: Path) -> None:
    replies = complete("xetool vm-start --wait --", pool).replies
    assert "--wait" not in replies and "--force" in replies


def test_host_sim_list_completes_like_a_listing(pool: Path) -> None:
    assert complete("xetool host-sim-list params=st", pool).replies == ["state"]
    assert complete("xetool host-sim-list state=", pool).replies == ["running", "stopped", "not-started", "unreachable"]
    assert "--minimal" in complete("xetool host-sim-list --", pool).replies

