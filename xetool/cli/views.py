"""Records that are not rows of the pool's database but list like them: `params=`, field filters,
`--minimal` and `--format json` behave as on every other listing. A view is a ClassSpec outside
the datamodel's CLASSES, so it gets no table and no generated commands."""

from __future__ import annotations

from xetool.datamodel import get_class
from xetool.datamodel.types import ClassSpec, Field, Kind, Qualifier

SIM_STATES = ("running", "stopped", "not-started", "unreachable")

HOST_SIM = ClassSpec("host_sim", "A simulated host's process.", (
    Field("uuid", Kind.STR, Qualifier.DRO, "The host's uuid."),
    Field("name_label", Kind.STR, Qualifier.DRO, "The host's name."),
    Field("state", Kind.ENUM, Qualifier.DRO, "running; stopped (it crashed or was stopped); not-started (it starts "
          "on demand); unreachable (a remote host that SSH cannot reach).", "not-started", values=SIM_STATES),
    Field("pid", Kind.INT, Qualifier.DRO, "The process's pid, -1 when none runs.", -1),
    Field("xenstore_socket", Kind.STR, Qualifier.DRO, "The host's xenstored socket (XENSTORED_PATH for xenstore-ls), on the host."),
), list_params=("uuid", "name_label", "state", "pid", "xenstore_socket"))

VIEWS: dict[str, ClassSpec] = {HOST_SIM.name: HOST_SIM}


def spec_of(name: str) -> ClassSpec:
    """A view or a class of the datamodel, by name."""
    view = VIEWS.get(name.replace("-", "_"))
    return view if view is not None else get_class(name)
