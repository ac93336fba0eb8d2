"""xe's argument grammar (xetool.cli.grammar) and the value codec."""

from __future__ import annotations

import pytest

from xetool.cli.grammar import parse
from xetool.datamodel import CLASSES
from xetool.errors import XeError
from xetool.store.codec import escape_minimal, parse_cli, show, split_escaped


def code(words):
    with pytest.raises(XeError) as err:
        parse(words)
    return err.value.code


def test_value_keeps_equals_signs():
    assert parse(["PV-args=root=/dev/xvda1 console=hvc0"]).params == {"PV-args": "root=/dev/xvda1 console=hvc0"}


def test_empty_value_is_a_value():
    assert parse(["name-description="]).params == {"name-description": ""}


def test_map_key():
    assert parse(["other-config:owner=ops", "platform:acpi=1"]).params == {"other-config:owner": "ops", "platform:acpi": "1"}


def test_flags():
    args = parse(["--force", "multiple=true", "--minimal=false"])
    assert args.params == {"force": "true", "multiple": "true", "minimal": "false"}
    assert args.flag("force") and args.flag("multiple") and not args.flag("minimal") and not args.flag("absent")


def test_flag_with_bad_bool():
    with pytest.raises(XeError) as err:
        parse(["force=perhaps"]).flag("force")
    assert err.value.code == "FIELD_TYPE_ERROR"


def test_order_kept():
    assert list(parse(["b=1", "a=2", "c=3"]).params) == ["b", "a", "c"]


@pytest.mark.parametrize("words,expected", [
    (["vm=a", "vm=b"], "REPEATED_PARAMETER"),
    (["--force", "force=true"], "REPEATED_PARAMETER"),
    (["novalue"], "SYNTAX_ERROR"),
    (["=value"], "SYNTAX_ERROR"),
    (["1abc=x"], "SYNTAX_ERROR"),
    (["name-label=\udcff"], "NOT_UTF8"),
    (["na\udcffme=x"], "NOT_UTF8"),
    (["\udcff"], "NOT_UTF8"),
])
def test_refused(words, expected):
    assert code(words) == expected


def test_valid_non_ascii_utf8_is_fine():
    assert parse(["name-label=café ☕"]).params == {"name-label": "café ☕"}


VM = CLASSES["vm"]


@pytest.mark.parametrize("field,text,value", [
    ("VCPUs_max", "4", 4), ("VCPUs_max", "0x10", 16), ("HVM_shadow_multiplier", "1.5", 1.5),
    ("ha_always_run", "TRUE", True), ("ha_always_run", "no", False),
    ("power_state", "halted", "Halted"), ("affinity", "", None),
    ("affinity", "0A7F3C4E-1234-4ABC-8DEF-0123456789AB", "0a7f3c4e-1234-4abc-8def-0123456789ab"),
])
def test_parse_cli(field, text, value):
    assert parse_cli(VM.field(field), text) == value


@pytest.mark.parametrize("field,text,expected", [
    ("VCPUs_max", "two", "FIELD_TYPE_ERROR"), ("HVM_shadow_multiplier", "x", "FIELD_TYPE_ERROR"),
    ("ha_always_run", "maybe", "FIELD_TYPE_ERROR"), ("power_state", "flying", "FIELD_TYPE_ERROR"),
    ("affinity", "not-a-uuid", "UUID_INVALID"),
])
def test_parse_cli_refused(field, text, expected):
    with pytest.raises(XeError) as err:
        parse_cli(VM.field(field), text)
    assert err.value.code == expected


def test_show():
    assert show(VM.field("platform"), {"acpi": "1", "nx": "0"}) == "acpi: 1; nx: 0"
    assert show(VM.field("tags"), ["a", "b"]) == "a; b"
    assert show(VM.field("power_state"), "Running") == "running"
    assert show(VM.field("affinity"), None) == "<not in database>"
    assert show(VM.field("ha_always_run"), True) == "true"


@pytest.mark.parametrize("text", ["plain", "a,b", "back\\slash", "\\,", ",,", ""])
def test_minimal_escaping_round_trips(text):
    joined = ",".join(escape_minimal(t) for t in (text, "next"))
    assert split_escaped(joined) == [text, "next"]


def test_escape_minimal():
    assert escape_minimal("a,b\\c") == "a\\,b\\\\c"
