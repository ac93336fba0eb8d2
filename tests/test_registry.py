"""Enumerations of the registries: commands, classes, error codes."""

from __future__ import annotations

import importlib
import re

import pytest

from tests.conftest import run_xe
from xetool.cli.registry import commands
from xetool.datamodel import CLASSES, cli_class_name
from xetool.datamodel.types import Kind
from xetool.errors import REGISTRY, ExitStatus, XeError

COMMANDS = sorted(commands())


@pytest.fixture(scope="module")
def help_all(tmp_path_factory):
    r = run_xe(tmp_path_factory.mktemp("s"), "help", "--all")
    assert r.rc == 0
    return r.out


@pytest.mark.parametrize("name", COMMANDS)
def test_command_has_help_and_an_implementation(name, help_all, tmp_path):
    cmd = commands()[name]
    assert cmd.help.strip().endswith(".") and len(cmd.help) > 10
    module, _, func = cmd.impl.partition(":")
    assert callable(getattr(importlib.import_module(module), func))
    listed = set(re.split(r"[,\s]+", help_all.split("Full command list")[1]))
    assert name in listed
    r = run_xe(tmp_path, "help", name)
    assert r.rc == 0 and r.out.startswith(f"command name            : {name}\n")
    for line in ("reqd params     : ", "optional params : ", "description     : "):
        assert f"        {line}" in r.out
    for p in cmd.reqd:
        assert p in r.out
    r2 = run_xe(tmp_path, name, "--help")  # `<command> --help` is `help <command>`
    assert r2.rc == 0 and r2.out == r.out


def test_plain_help_lists_only_standard_commands(tmp_path):
    out = run_xe(tmp_path, "help").out
    body = out.split("Common command list")[1]
    for name, cmd in commands().items():
        assert (name in body.replace(",", " ").split()) == cmd.standard


def test_help_minimal_is_every_command(tmp_path):
    assert run_xe(tmp_path, "help", "--all", "--minimal").out.strip().split(",") == COMMANDS


@pytest.mark.parametrize("spec", CLASSES.values(), ids=list(CLASSES))
def test_every_class_has_its_param_commands(spec):
    c = cli_class_name(spec)
    names = set(commands())
    assert {f"{c}-list", f"{c}-param-list", f"{c}-param-get"} <= names
    if any(f.settable for f in spec.fields):
        assert f"{c}-param-set" in names
    if any(f.settable and f.kind in (Kind.SET, Kind.MAP) for f in spec.fields):
        assert {f"{c}-param-add", f"{c}-param-remove", f"{c}-param-clear"} <= names
    else:
        assert f"{c}-param-add" not in names


@pytest.mark.parametrize("name", ["vm-create", "vm-destroy", "vdi-create", "vdi-destroy", "sr-create",
                                  "network-create", "vif-create", "vbd-create", "host-list",
                                  "pool-import", "pool-export", "help"])
def test_commands_the_issue_asks_for(name):
    assert name in commands()


@pytest.mark.parametrize("code", sorted(REGISTRY))
def test_error_has_doc_params_and_status(code):
    spec = REGISTRY[code]
    assert spec.code == code and spec.code.isupper()
    assert spec.doc.strip() and spec.doc[0].isupper() and spec.doc.rstrip().endswith((".", ")"))
    assert all(p and p == p.strip() and " " not in p for p in spec.params)
    assert len(set(spec.params)) == len(spec.params)
    assert isinstance(spec.status, ExitStatus) and spec.status != ExitStatus.OK
    err = XeError(code, *[f"v{i}" for i in range(len(spec.params))])
    assert err.render().splitlines() == [spec.doc] + [f"{p}: v{i}" for i, p in enumerate(spec.params)]


def test_unregistered_code_is_an_internal_error():
    err = XeError("NO_SUCH_CODE", "x")
    assert err.code == "INTERNAL_ERROR" and "NO_SUCH_CODE" in err.render()
