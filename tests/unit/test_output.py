"""The renderers: xe's record layout, --minimal and JSON."""

from __future__ import annotations

import io
import json

from xetool.cli.output import Message, Records, Value, render, xe_record
from xetool.datamodel import CLASSES


def test_record_layout():
    text = xe_record([("uuid ( RO)", "u1"), ("name-label ( RW)", "web01"), ("power-state ( RO)", "halted")])
    assert text == (
        "uuid ( RO)           : u1\n"
        "     name-label ( RW): web01\n"
        "    power-state ( RO): halted\n"
        "\n\n"
    )


def test_record_colons_align():
    keys = ["uuid ( RO)", "name-label ( RW)", "a ( RO)", "memory-static-max ( RW)"]
    lines = xe_record([(k, "v") for k in keys]).splitlines()[:4]
    assert len({line.index(": ") for line in lines}) == 1
    assert lines[0].startswith("uuid") and lines[3].startswith("    memory-static-max")


def _records(rows, names):
    spec = CLASSES["vm"]
    return Records(spec, rows, [spec.field(n) for n in names])


def test_minimal_first_field_escaped():
    out = io.StringIO()
    render(_records([{"name_label": "a,b"}, {"name_label": "c\\d"}], ["name_label"]), out, minimal=True)
    assert out.getvalue() == "a\\,b,c\\\\d\n"


def test_minimal_of_nothing_is_an_empty_line():
    out = io.StringIO()
    render(_records([], ["uuid"]), out, minimal=True)
    assert out.getvalue() == "\n"


def test_records_print_markers_and_two_blank_lines():
    out = io.StringIO()
    rows = [{"uuid": "u1", "platform": {"acpi": "1"}}, {"uuid": "u2", "platform": {}}]
    render(_records(rows, ["uuid", "platform"]), out)
    assert out.getvalue() == (
        "uuid ( RO)        : u1\n    platform (MRW): acpi: 1\n\n\n"
        "uuid ( RO)        : u2\n    platform (MRW): \n\n\n"
    )


def test_json():
    out = io.StringIO()
    render(_records([{"uuid": "u1", "power_state": "Halted", "platform": {"nx": "1"}, "VCPUs_max": 2}],
                    ["uuid", "power_state", "VCPUs_max", "platform"]), out, fmt="json")
    assert json.loads(out.getvalue()) == [{"uuid": "u1", "power-state": "halted", "VCPUs-max": 2, "platform": {"nx": "1"}}]


def test_message_dropped_by_minimal_value_kept():
    out = io.StringIO()
    render(Message("note"), out, minimal=True)
    render(Value("x"), out, minimal=True)
    assert out.getvalue() == "x\n"
