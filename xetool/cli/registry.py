"""The command registry: every command's name, parameters and help, as data.

Help, the man page, completion and the click app all read this table; the implementation of a
command is imported only when the command runs. The generic per-class commands (`vm-list`,
`vm-param-get`, ...) are generated from the datamodel.
"""

from __future__ import annotations

from functools import lru_cache

from xetool.datamodel import CLASSES, cli_class_name
from xetool.datamodel.types import Kind
from xetool.records import record

# Options every command takes; they are the CLI's, not the command's.
GLOBAL_OPTIONS = ("minimal", "format", "state-dir", "debug", "trace", "quiet")


@record(frozen=True)
class Command:
    name: str
    help: str
    impl: str  # "module:function", imported when the command runs
    reqd: tuple[str, ...] = ()
    optn: tuple[str, ...] = ()
    selector: str | None = None  # takes <class>-selectors (vm=, host=, field filters)
    cls: str | None = None  # the class a generated command is about
    standard: bool = False  # listed by plain `xetool help`
    any_field: bool = False  # accepts any field of `cls` as key=value (filters, creation)
    lists: bool = False  # prints records (so --minimal, params= and --format json apply)
    free_keys: bool = False  # takes arbitrary key=value pairs (the entries of a map: -param-add)

    @property
    def group(self) -> str:
        return self.name.split("-", 1)[0]


def _c(name: str, help: str, impl: str, **kw: object) -> Command:
    return Command(name, help, impl, **kw)  # type: ignore[arg-type]


SELECTOR_HELP = (
    "Objects are selected by `<class>=<name-label or uuid>` and by field filters "
    "(`power-state=halted`, `other-config:owner=ops`); when more than one matches, --multiple is required."
)

BESPOKE: tuple[Command, ...] = (
    _c("help", "Show help: the common commands, every command (--all), or one command's parameters.",
       "xetool.cli.commands.help:help_cmd", optn=("command", "all")),
    _c("pool-import", "Create or update the pool from a TOML definition (all or nothing).",
       "xetool.cli.commands.pool:pool_import", reqd=("file",), optn=("dry-run",)),
    _c("pool-export", "Write the pool as a TOML definition that imports back to the same pool.",
       "xetool.cli.commands.pool:pool_export", optn=("file",)),
    _c("vm-create", "Create a halted VM; any settable VM field may be given as key=value. memory=SIZE sets "
       "static-max, dynamic-max and dynamic-min (16MiB to 1536GiB). " + "Sizes are bytes or binary units: "
       "K/KiB, M/MiB, G/GiB, T/TiB (MB, GB are refused as ambiguous).",
       "xetool.cli.commands.objects:vm_create", reqd=("name-label",), optn=("memory",), cls="vm", any_field=True),
    _c("vm-destroy", "Destroy a halted VM's record with its VBDs and VIFs (its disks are kept).",
       "xetool.cli.commands.objects:vm_destroy", reqd=("uuid",)),
    _c("sr-create", "Create an SR: type=file is a directory of sparse raw disk files.",
       "xetool.cli.commands.objects:sr_create", reqd=("name-label",),
       optn=("type", "name-description", "device-config:path", "host-uuid", "shared", "content-type")),
    _c("sr-destroy", "Destroy an SR record that holds no disks, with its PBDs.",
       "xetool.cli.commands.objects:sr_destroy", reqd=("uuid",)),
    _c("vdi-create", "Create a disk image in an SR (a sparse raw file for a file SR); virtual-size is 1 byte to "
       "2040GiB, in bytes or binary units (MiB, GiB; MB, GB are refused as ambiguous).",
       "xetool.cli.commands.objects:vdi_create", reqd=("sr-uuid", "name-label", "virtual-size"),
       optn=("type", "sharable", "read-only", "name-description")),
    _c("vdi-destroy", "Destroy a disk image that no VBD uses, and its file.",
       "xetool.cli.commands.objects:vdi_destroy", reqd=("uuid",)),
    _c("network-create", "Create a network; its bridge is named after it unless bridge= is given.",
       "xetool.cli.commands.objects:network_create", reqd=("name-label",), optn=("bridge", "name-description", "MTU")),
    _c("network-destroy", "Destroy a network that no VIF uses, with its PIFs.",
       "xetool.cli.commands.objects:network_destroy", reqd=("uuid",)),
    _c("pif-create", "Give a host an interface on a network (what the host's NIC would be).",
       "xetool.cli.commands.objects:pif_create", reqd=("host-uuid", "network-uuid"), optn=("device", "MAC", "VLAN")),
    _c("vif-create", "Create a VIF on a VM; prints its uuid.",
       "xetool.cli.commands.objects:vif_create", reqd=("vm-uuid", "network-uuid", "device"), optn=("mac",)),
    _c("vif-destroy", "Destroy a VIF that is not plugged.",
       "xetool.cli.commands.objects:vif_destroy", reqd=("uuid",)),
    _c("vbd-create", "Create a VBD joining a VDI to a VM; prints its uuid.",
       "xetool.cli.commands.objects:vbd_create", reqd=("vm-uuid", "device"),
       optn=("vdi-uuid", "bootable", "type", "mode", "unpluggable")),
    _c("vbd-destroy", "Destroy a VBD that is not plugged (the VDI is kept).",
       "xetool.cli.commands.objects:vbd_destroy", reqd=("uuid",)),
    _c("host-enable", "Enable a host: VMs may start on it again.",
       "xetool.cli.commands.objects:host_enable", selector="host"),
    _c("host-disable", "Disable a host: no new VM starts on it.",
       "xetool.cli.commands.objects:host_disable", selector="host"),
    _c("event-wait", "Wait until an object of the class matches every field filter (uuid=, power-state=running, "
       "field=/=value for not equal), for at most timeout= seconds (default 60); prints nothing.",
       "xetool.cli.commands.event:event_wait", reqd=("class",), optn=("uuid", "timeout"), any_field=True),
)


def _generated(spec_name: str) -> tuple[Command, ...]:
    spec = CLASSES[spec_name]
    c = cli_class_name(spec)
    impl = "xetool.cli.params:"
    cmds = [
        _c(f"{c}-list", f"List the {c} objects, with field filters and params=.", impl + "list_cmd",
           optn=("params",), cls=spec.name, any_field=True, lists=True, standard=c in ("vm", "host", "sr", "network")),
        _c(f"{c}-param-list", f"Print every field of one {c}.", impl + "param_list", reqd=("uuid",), cls=spec.name, lists=True),
        _c(f"{c}-param-get", f"Print one field of one {c} (param-key= for one key of a map).", impl + "param_get",
           reqd=("uuid", "param-name"), optn=("param-key",), cls=spec.name),
    ]
    if any(f.settable for f in spec.fields):
        cmds.append(_c(f"{c}-param-set", f"Set read-write fields of one {c}: field=value, map:key=value.",
                       impl + "param_set", reqd=("uuid",), cls=spec.name, any_field=True))
    if any(f.settable and f.kind in (Kind.SET, Kind.MAP) for f in spec.fields):
        cmds += [
            _c(f"{c}-param-add", f"Add to a set or map field of one {c} (map: key=value pairs).",
               impl + "param_add", reqd=("uuid", "param-name"), optn=("param-key",), cls=spec.name, any_field=True,
               free_keys=True),
            _c(f"{c}-param-remove", f"Remove a key (or member) from a set or map field of one {c}.",
               impl + "param_remove", reqd=("uuid", "param-name", "param-key"), cls=spec.name),
            _c(f"{c}-param-clear", f"Empty a set or map field of one {c} (other fields are changed with -param-set).",
               impl + "param_clear", reqd=("uuid", "param-name"), cls=spec.name),
        ]
    return tuple(cmds)


@lru_cache(maxsize=1)
def commands() -> dict[str, Command]:
    table: dict[str, Command] = {}
    for name in CLASSES:
        for cmd in _generated(name):
            table[cmd.name] = cmd
    for cmd in BESPOKE + _extra():
        table[cmd.name] = cmd
    return dict(sorted(table.items()))


def _extra() -> tuple[Command, ...]:
    """Commands registered by the lifecycle modules (vm-start and friends)."""
    from xetool.cli.lifecycle_commands import COMMANDS

    return COMMANDS


def lookup(name: str) -> Command | None:
    return commands().get(name)
