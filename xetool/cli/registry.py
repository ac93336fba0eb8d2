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

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from typing import Any

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
    param_help: tuple[tuple[str, str], ...] = ()  # what a parameter means for this command (see param_doc)

    @property
    def group(self) -> str:
        return self.name.split("-", 1)[0]


# One line per parameter, for help and the man page. A command's own `param_help` comes first, then
# this table, then the datamodel's doc of the field of that name in the command's class.
PARAM_HELP: dict[str, str] = {
    "uuid": "The uuid of the object.",
    "params": "The fields to print, comma-separated (in record order), or `all`; default: the class's usual ones.",
    "param-name": "The field, by its name as listed (name-label, other-config).",
    "param-key": "One key of a map field (or one member of a set).",
    "multiple": "Act on every object the selectors match (required when more than one does); "
                "each failure is reported and the others still run.",
    "force": "Go ahead where the command would otherwise refuse or be gentle (see the description).",
    "wait": "If another operation holds the VM, wait for it (--wait: up to 30 s, wait=SECONDS) instead of "
            "failing at once; exit 4 when the wait runs out.",
    "timeout": "Seconds to wait for the guest before giving up (exit 4).",
    "file": "The path of the TOML pool definition.",
    "dry-run": "Show what would be done and change nothing.",
    "name-label": "The new object's name.",
    "name-description": "A description of the new object.",
    "vm-uuid": "The VM's uuid.",
    "vdi-uuid": "The disk image's uuid.",
    "network-uuid": "The network's uuid.",
    "host-uuid": "The host's uuid.",
    "sr-uuid": "The SR's uuid.",
}
VBD_HELP = (("device", "The device number in the guest (0 = xvda/hda)."),)
SELECTORS_HELP = "`{cls}=NAME-OR-UUID` and filters on any field (`power-state=halted`, `other-config:k=v`)."
FIELDS_HELP = "Any field of the {cls} as `field=value` (`map:key=value` for a map)."


def _c(name: str, help: str, impl: str, **kw: Any) -> Command:
    return Command(name, help, impl, **kw)


SELECTOR_HELP = (
    "Objects are selected by `<class>=<name-label or uuid>` and by field filters "
    "(`power-state=halted`, `other-config:owner=ops`); when more than one matches, --multiple is required."
)

BESPOKE: tuple[Command, ...] = (
    _c("help", "Show help: the common commands, every command (--all), or one command's parameters.",
       "xetool.cli.commands.help:help_cmd", optn=("command", "all"),
       param_help=(("command", "The command to describe."), ("all", "List every command, not only the common ones."))),
    _c("pool-import", "Create or update the pool from a TOML definition (all or nothing).",
       "xetool.cli.commands.pool:pool_import", reqd=("file",), optn=("dry-run",),
       param_help=(("dry-run", "Check the file and print the changes it would make, without making them."),)),
    _c("pool-export", "Write the pool as a TOML definition that imports back to the same pool.",
       "xetool.cli.commands.pool:pool_export", optn=("file",),
       param_help=(("file", "Where to write the definition (default: standard output)."),)),
    _c("vm-create", "Create a halted VM; any settable VM field may be given as key=value.",
       "xetool.cli.commands.objects:vm_create", reqd=("name-label",), optn=("memory",), cls="vm", any_field=True,
       param_help=(("memory", "The VM's memory: static and dynamic maximum and dynamic minimum, 16MiB to 1536GiB. "
                    "Sizes are bytes or binary units: K/KiB, M/MiB, G/GiB, T/TiB (MB, GB are refused as "
                    "ambiguous)."),)),
    _c("vm-destroy", "Destroy a halted VM's record with its VBDs and VIFs (its disks are kept).",
       "xetool.cli.commands.objects:vm_destroy", reqd=("uuid",), optn=("wait",)),
    _c("sr-create", "Create an SR: type=file is a directory of sparse raw disk files.",
       "xetool.cli.commands.objects:sr_create", reqd=("name-label",),
       optn=("type", "name-description", "device-config:path", "host-uuid", "shared", "content-type"),
       param_help=(("type", "The SR driver: `file` (the only one), a directory of sparse raw files."),
                   ("device-config:path", "The SR's directory (default: srs/UUID in the state directory)."),
                   ("host-uuid", "The one host that sees the SR (default: every host)."))),
    _c("sr-destroy", "Destroy an SR record that holds no disks, with its PBDs.",
       "xetool.cli.commands.objects:sr_destroy", reqd=("uuid",)),
    _c("vdi-create", "Create a disk image in an SR (a sparse raw file for a file SR); virtual-size is 1 byte to "
       "2040GiB, in bytes or binary units (MiB, GiB; MB, GB are refused as ambiguous).",
       "xetool.cli.commands.objects:vdi_create", reqd=("sr-uuid", "name-label", "virtual-size"),
       optn=("type", "sharable", "read-only", "name-description"),
       param_help=(("virtual-size", "The size the guest sees: bytes, or with a unit (10GiB, 512M)."),)),
    _c("vdi-destroy", "Destroy a disk image that no VBD uses, and its file.",
       "xetool.cli.commands.objects:vdi_destroy", reqd=("uuid",)),
    _c("network-create", "Create a network; its bridge is named after it unless bridge= is given.",
       "xetool.cli.commands.objects:network_create", reqd=("name-label",), optn=("bridge", "name-description", "MTU"),
       param_help=(("bridge", "The bridge's name in dom0 (default: named after the network)."),)),
    _c("network-destroy", "Destroy a network that no VIF uses, with its PIFs.",
       "xetool.cli.commands.objects:network_destroy", reqd=("uuid",)),
    _c("pif-create", "Give a host an interface on a network (what the host's NIC would be).",
       "xetool.cli.commands.objects:pif_create", reqd=("host-uuid", "network-uuid"), optn=("device", "MAC", "VLAN")),
    _c("vif-create", "Create a VIF on a VM; prints its uuid.",
       "xetool.cli.commands.objects:vif_create", reqd=("vm-uuid", "network-uuid", "device"), optn=("mac",),
       param_help=(("mac", "The interface's MAC address (default: one in Xen's 00:16:3e range, derived from the VIF's uuid)."),)),
    _c("vif-destroy", "Destroy a VIF that is not plugged.",
       "xetool.cli.commands.objects:vif_destroy", reqd=("uuid",)),
    _c("vbd-create", "Create a VBD joining a VDI to a VM; prints its uuid.",
       "xetool.cli.commands.objects:vbd_create", reqd=("vm-uuid", "device"),
       optn=("vdi-uuid", "bootable", "type", "mode", "unpluggable"),
       param_help=VBD_HELP + (("vdi-uuid", "The disk image (none: an empty drive)."),)),
    _c("vbd-destroy", "Destroy a VBD that is not plugged (the VDI is kept).",
       "xetool.cli.commands.objects:vbd_destroy", reqd=("uuid",)),
    _c("host-enable", "Enable a host: VMs may start on it again.",
       "xetool.cli.commands.objects:host_enable", selector="host"),
    _c("host-disable", "Disable a host: no new VM starts on it.",
       "xetool.cli.commands.objects:host_disable", selector="host"),
    _c("event-wait", "Wait until an object of the class matches every field filter (uuid=, power-state=running, "
       "field=/=value for not equal), for at most timeout= seconds (default 60); prints nothing.",
       "xetool.cli.commands.event:event_wait", reqd=("class",), optn=("uuid", "timeout"), any_field=True,
       param_help=(("class", "The class of the object to wait for (vm, host, ...)."),
                   ("uuid", "The object to wait for (default: any object of the class)."),
                   ("timeout", "Seconds to wait at most (default 60); exit 4 when they run out."))),
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


def command(name: str) -> Command:
    """A command known to exist: one the code names (`help`), or one already looked up."""
    return commands()[name]


def command_class(cmd: Command) -> str | None:
    """The class a command is about: its cls or selector, else the longest class prefix of its name."""
    if cmd.cls or cmd.selector:
        return cmd.cls or cmd.selector  # a class of the datamodel, or a view (cli/views.py)
    best = [name for name in CLASSES if cmd.name.startswith(cli_class_name(CLASSES[name]) + "-")]
    return max(best, key=len) if best else None


def param_doc(cmd: Command, name: str) -> str | None:
    """The one line that explains a parameter of the command (None: nobody wrote one)."""
    own = dict(cmd.param_help)
    if name in own:
        return own[name]
    if name.startswith("<"):  # <vm-selectors>, <vm-fields>, <fields of the class>
        cls = name.strip("<>").rsplit("-", 1)[0]
        if name.endswith("-selectors>"):
            return SELECTORS_HELP.format(cls=cls)
        return FIELDS_HELP.format(cls=cls if name.endswith("-fields>") else "class given by class=")
    if name in PARAM_HELP:
        return PARAM_HELP[name]
    owner = command_class(cmd)
    from xetool.cli.views import spec_of

    f = spec_of(owner).field(name) if owner else None
    return f.doc if f is not None else None
