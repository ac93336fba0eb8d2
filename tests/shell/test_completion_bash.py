"""The completion function, called as bash calls it, with COMP_WORDS split by hand the way bash
splits them, under the default COMP_WORDBREAKS and under one without `=` and `:`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.shell.conftest import SCRIPT, xetool

DEFAULT = " \t\n\"'><=;|&(:"
NO_EQ_COLON = " \t\n\"'><;|&("

DRIVER = f"""
source {SCRIPT}
compopt() {{ printf 'COMPOPT %s\\n' "$*"; }}
COMP_WORDBREAKS=$1
COMP_LINE=$2
COMP_POINT=${{#COMP_LINE}}
COMP_WORDS=("${{@:3}}")
COMP_CWORD=$(($# - 3))
_xetool
printf 'REPLY %s\\n' "${{COMPREPLY[@]}}"
"""


def split(line: str, breaks: str) -> list[str]:
    """COMP_WORDS as bash makes them: runs of break characters are words of their own."""
    brk = re.escape(breaks.strip())
    words = []
    for chunk in line.split(" "):
        words += re.findall(rf"[{brk}]+|[^{brk}]+", chunk) if chunk else [""]
    return words


class Result:
    def __init__(self, out: str) -> None:
        self.replies = [line[6:] for line in out.splitlines() if line.startswith("REPLY ") and line[6:]]
        self.opts = {line[8:] for line in out.splitlines() if line.startswith("COMPOPT ")}


def complete(line: str, state: Path, breaks: str = DEFAULT, cwd: Path | None = None) -> Result:
    env = {**os.environ, "XETOOL_STATE_DIR": str(state), "XETOOL_COMPLETION_PYTHON": sys.executable}
    run = subprocess.run(["bash", "--norc", "--noprofile", "-c", DRIVER, "bash", breaks, line, *split(line, breaks)],
                         capture_output=True, text=True, env=env, cwd=cwd, check=True)
    assert run.stderr == "", run.stderr
    return Result(run.stdout)


def test_split_matches_the_documented_bash_behaviour() -> None:
    assert split("xetool vm-start vm=w", DEFAULT) == ["xetool", "vm-start", "vm", "=", "w"]
    assert split("xetool vm-start vm=", DEFAULT) == ["xetool", "vm-start", "vm", "="]
    assert split("xetool vm-start other-config:k", DEFAULT) == ["xetool", "vm-start", "other-config", ":", "k"]
    assert split("xetool vm-start ", DEFAULT) == ["xetool", "vm-start", ""]


def test_command_groups_then_commands(pool: Path) -> None:
    groups = complete("xetool ", pool).replies
    assert "vm-" in groups and "host-" in groups and "help" in groups and "vm-list" not in groups
    assert complete("xetool v", pool).replies == ["vbd-", "vdi-", "vif-", "vm-"]
    vm = complete("xetool vm", pool).replies
    assert "vm-list" in vm and "vm-param-get" in vm
    assert complete("xetool vm-param-g", pool).replies == ["vm-param-get"]
    assert complete("xetool help vm-param-l", pool).replies == ["vm-param-list"]


def test_group_prefix_keeps_the_cursor(pool: Path) -> None:
    r = complete("xetool po", pool)
    assert r.replies == ["pool-check", "pool-export", "pool-import", "pool-list", "pool-param-add", "pool-param-clear",
                         "pool-param-get", "pool-param-list", "pool-param-remove", "pool-param-set"]


@pytest.mark.parametrize("breaks, prefix", [(DEFAULT, ""), (NO_EQ_COLON, "mode=")])
def test_enum_values(pool: Path, breaks: str, prefix: str) -> None:
    assert complete("xetool vbd-create mode=", pool, breaks).replies == [prefix + "RO", prefix + "RW"]
    assert complete("xetool vbd-create vm-uuid=x mode=R", pool, breaks).replies == [prefix + "RO", prefix + "RW"]


@pytest.mark.parametrize("breaks, prefix", [(DEFAULT, ""), (NO_EQ_COLON, "vm=")])
def test_names(pool: Path, breaks: str, prefix: str) -> None:
    assert complete("xetool vm-list vm=", pool, breaks).replies == [prefix + n for n in ("web01", "db01", "win01")]
    assert complete("xetool vm-list vm=w", pool, breaks).replies == [prefix + n for n in ("web01", "win01")]
    assert complete("xetool host-enable host=host2", pool, breaks).replies == [prefix.replace("vm", "host") + "host2"]


def test_uuids_are_described_when_there_are_several(pool: Path, vm_uuids: dict[str, str]) -> None:
    replies = complete("xetool vm-param-get uuid=", pool).replies
    assert sorted(replies) == sorted(f"{u}  ({n})" for n, u in vm_uuids.items())
    u = vm_uuids["win01"]
    assert complete(f"xetool vm-param-get uuid={u[:13]}", pool).replies == [u]  # one: the bare uuid
    assert complete(f"xetool vbd-create vm-uuid={u[:13]}", pool).replies == [u]


def test_param_names_leave_out_those_given(pool: Path) -> None:
    assert complete("xetool vm-param-get ", pool).replies == ["uuid=", "param-name=", "param-key="]
    r = complete("xetool vm-param-get uuid=x param-name=y ", pool)
    assert r.replies == ["param-key="]
    assert "-o nospace" in r.opts  # the cursor stays after `=`


def test_selector_and_filter_params(pool: Path) -> None:
    replies = complete("xetool host-enable ", pool).replies
    assert {"host=", "multiple=", "name-label=", "enabled=", "other-config:", "tags:contains="} <= set(replies)
    listed = complete("xetool vm-list p", pool).replies
    assert listed == ["params=", "power-state=", "platform:"]
    assert complete("xetool vm-list power-state=halted p", pool).replies == ["params=", "platform:"]


def test_map_params_keep_their_colon(pool: Path) -> None:
    r = complete("xetool vm-param-set uuid=x other", pool)
    assert r.replies == ["other-config:"] and "-o nospace" in r.opts
    settable = complete("xetool vm-param-set uuid=x ", pool).replies
    assert "power-state=" not in settable and "VCPUs-max=" in settable


def test_flags(pool: Path) -> None:
    assert complete("xetool vm-list --m", pool).replies == ["--minimal"]
    assert set(complete("xetool host-enable --", pool).replies) >= {"--multiple", "--minimal", "--quiet"}
    assert complete("xetool --q", pool).replies == ["--quiet"]
    assert complete("xetool --format=j", pool).replies == ["json"]
    assert complete("xetool vm-list --minimal --m", pool).replies == []


def test_params_field_list(pool: Path) -> None:
    fields = complete("xetool vm-list params=", pool).replies
    assert fields[0] == "all" and "power-state" in fields and "name-label" in fields
    r = complete("xetool vm-list params=uuid,name-l", pool)
    assert r.replies == ["uuid,name-label"] and "-o nospace" in r.opts
    assert "uuid,uuid" not in complete("xetool vm-list params=uuid,", pool).replies


def test_param_name_values(pool: Path) -> None:
    assert complete("xetool vm-param-get uuid=x param-name=power", pool).replies == ["power-state"]
    assert complete("xetool vm-param-add uuid=x param-name=t", pool).replies == ["tags"]


def test_booleans_and_refs_of_fields(pool: Path) -> None:
    assert complete("xetool vm-list is-a-template=", pool).replies == ["true", "false"]
    hosts = complete("xetool vm-list resident-on=", pool).replies
    assert len(hosts) == 3 and all(re.match(r"^[0-9a-f-]{36}  \(host\d\)$", h) for h in hosts)


def test_event_wait_follows_class(pool: Path) -> None:
    assert complete("xetool event-wait class=v", pool).replies == ["vm", "vm-metrics", "vm-guest-metrics", "vbd", "vdi", "vif"]
    assert complete("xetool event-wait class=vm power-state=r", pool).replies == ["running"]
    host = complete("xetool event-wait class=host ", pool).replies
    assert "enabled=" in host and "power-state=" not in host and "timeout=" in host and "class=" not in host
    assert len(complete("xetool event-wait class=host uuid=", pool).replies) == 3


def test_state_dir_on_the_line_wins(pool: Path, tmp_path: Path) -> None:
    assert complete(f"xetool --state-dir={tmp_path} vm-list vm=", pool).replies == []
    assert complete(f"xetool --state-dir {pool} vm-list vm=w", tmp_path).replies == ["web01", "win01"]


def test_names_with_spaces_are_quoted(fresh_pool: Path) -> None:
    xetool("vm-create", "name-label=my vm", state=fresh_pool)
    assert complete("xetool vm-list vm=my", fresh_pool).replies == ["my\\ vm"]


@pytest.mark.parametrize("breaks", [DEFAULT, NO_EQ_COLON])
def test_files(pool: Path, tmp_path: Path, breaks: str) -> None:
    (tmp_path / "pool.toml").write_text("")
    (tmp_path / "sub").mkdir()
    r = complete("xetool pool-import file=po", pool, breaks, cwd=tmp_path)
    s = complete("xetool pool-import file=su", pool, breaks, cwd=tmp_path)
    if breaks == DEFAULT:  # readline marks directories and quotes names itself
        assert r.replies == ["pool.toml"] and "-o filenames" in r.opts
        assert s.replies == ["sub"]
    else:
        assert r.replies == ["file=pool.toml"] and "-o filenames" not in r.opts
        assert s.replies == ["file=sub/"] and "-o nospace" in s.opts
