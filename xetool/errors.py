"""The error registry: every failure xetool reports is one of these entries.

Codes and parameter names follow xapi (`ocaml/idl/datamodel_errors.ml`) where xapi has the
error; the rest are xetool's own and say so in their doc. The CLI prints the doc sentence and one
``param: value`` line per parameter on stderr and exits with the entry's status; no other module
formats error text.
"""

from __future__ import annotations

from enum import IntEnum

from xetool.records import record


class ExitStatus(IntEnum):
    """Exit statuses of the `xetool` command (documented in the man page)."""

    OK = 0
    ERROR = 1  # an API error: the operation was refused or failed
    USAGE = 2  # the command line itself is wrong; nothing was looked up or changed
    BUSY = 3  # something else holds the object (OTHER_OPERATION_IN_PROGRESS, lock timeouts)
    TIMEOUT = 4  # a bounded wait ran out (event-wait, shutdown, hotplug)
    INTERNAL = 70  # a bug in xetool (EX_SOFTWARE)


@record(frozen=True)
class ErrorSpec:
    code: str
    params: tuple[str, ...]
    doc: str
    status: ExitStatus = ExitStatus.ERROR


REGISTRY: dict[str, ErrorSpec] = {}


def _e(code: str, params: str, doc: str, status: ExitStatus = ExitStatus.ERROR) -> None:
    REGISTRY[code] = ErrorSpec(code, tuple(params.split()), doc, status)


U, B, T = ExitStatus.USAGE, ExitStatus.BUSY, ExitStatus.TIMEOUT

# --- the command line (xetool's own; xe prints these as plain text) ---------------------------
_e("UNKNOWN_COMMAND", "command", "Unknown command. For usage run: 'xetool help'.", U)
_e("SYNTAX_ERROR", "detail", "The command line could not be parsed.", U)
_e("MISSING_PARAMETER", "param", "Required parameter not found.", U)
_e("UNKNOWN_PARAMETER", "param command", "The command does not take this parameter.", U)
_e("REPEATED_PARAMETER", "param", "The parameter was given more than once.", U)
_e("EMPTY_VALUE", "param", "The parameter needs a value, and an empty one was given.", U)
_e("NOT_UTF8", "param", "The argument is not valid UTF-8.", U)
_e("FIELD_TYPE_ERROR", "field value expected", "The value is not of the field's type.", U)
_e("FIELD_READ_ONLY", "field", "The field is read-only.", U)
_e("UNKNOWN_FIELD", "class field", "The class has no field of that name.", U)
_e("MAP_KEY_NOT_FOUND", "field key", "The map has no such key.")
_e("MAP_DUPLICATE_KEY", "type param_name uuid key", "You tried to add a key-value pair to a map, but that key is already there.")
_e("NO_MATCHING_OBJECTS", "class", "No matching objects found.")
_e("MULTIPLE_MATCHES", "class count", "More than one object matched: --multiple is required.", U)
_e("STATE_DIR_NOT_WRITABLE", "path reason", "The state directory cannot be written.")
_e("STATE_DIR_READ_ONLY", "path code",
   "The state directory is on a read-only file system: remount it read-write, or use another --state-dir.")
_e("STATE_DIR_UNSAFE", "path reason fix",
   "Another user could change the state directory, so xetool will not use it.")
_e("POOL_NOT_FOUND", "path",
   "The state directory holds no pool: create one with 'xetool pool-import file=POOL.toml', or give the right --state-dir.")
_e("STORE_CORRUPT", "path code reason", "The pool database cannot be used; it was left as it is.")
_e("STORE_DISK_FULL", "path code",
   "The file system holding the pool database is full; the change was rolled back. Free some space and retry.")
_e("STORE_IO_ERROR", "path code reason", "The pool database could not be read or written (an I/O error).")
_e("STORE_ERROR", "path code reason", "The pool database refused the request.")
_e("SCHEMA_TOO_NEW", "path version supported", "The pool database was written by a newer xetool.")
_e("TOML_SYNTAX_ERROR", "file line column detail", "The pool definition is not valid TOML.", U)
_e("POOL_DEFINITION_INVALID", "file table key reason", "The pool definition has a bad value.", U)
_e("FILE_NOT_READABLE", "file reason", "The file cannot be read.")

# --- objects and values (xapi) -------------------------------------------------------------------
_e("UUID_INVALID", "class uuid", "The uuid you supplied was invalid.", U)
_e("HANDLE_INVALID", "class handle", "You gave an invalid object reference.")
_e("INVALID_VALUE", "field value", "The value given is invalid.")
_e("VALUE_NOT_SUPPORTED", "field value reason", "You attempted to set a value that is not supported.")
_e("DEVICE_ALREADY_EXISTS", "device", "A device with the name given already exists on the VM.")
_e("INVALID_DEVICE", "device", "The device name is invalid.")
_e("OBJECT_IN_USE", "class object reason", "The object is still referenced and cannot be removed.")
_e("MEMORY_CONSTRAINT_VIOLATION", "constraint", "The dynamic memory range does not satisfy the constraint.")
_e("MEMORY_CONSTRAINT_VIOLATION_MAXPIN", "reason",
   "Memory limits must satisfy: static_min <= dynamic_min = dynamic_max = static_max.")
_e(
    "MEMORY_CONSTRAINT_VIOLATION_ORDER",
    "",
    "Memory limits must satisfy: static_min <= dynamic_min <= dynamic_max <= static_max.",
)

# --- lifecycle (xapi) -----------------------------------------------------------------------------
_e("VM_BAD_POWER_STATE", "vm expected actual", "You attempted an operation on a VM that was not in an appropriate power state at the time.")
_e("OPERATION_NOT_ALLOWED", "reason", "You attempted an operation that was not allowed.")
_e("OPERATION_BLOCKED", "ref code", "You attempted an operation that was explicitly blocked.")
_e("OTHER_OPERATION_IN_PROGRESS", "class object operation_type operation_ref", "Another operation involving the object is currently in progress.", B)
_e("VM_IS_TEMPLATE", "vm operation", "The operation attempted is not valid for a template VM.")
_e("DEVICE_ALREADY_ATTACHED", "device", "The device is already attached to a VM.")
_e("DEVICE_ALREADY_DETACHED", "device", "The device is not currently attached.")
_e("VBD_NOT_UNPLUGGABLE", "vbd", "Drive could not be hot-unplugged because it is not marked as unpluggable.")
_e("VDI_IN_USE", "vdi operation", "This VDI is in use by another VM.")
_e("VDI_READONLY", "vdi", "The operation required write access but this VDI is read-only.")
_e("VDI_MISSING", "sr vdi", "This operation cannot be performed because the specified VDI could not be found on the storage substrate.")
_e("TASK_CANCELLED", "task", "The request was asynchronously cancelled.")
_e("OPERATION_WAIT_TIMEOUT", "class object operation_type operation_ref seconds",
   "Another operation still held the object when the wait (--wait) ran out.", T)  # xetool's own
_e("LOCK_TIMEOUT", "lock holder seconds", "A lock could not be taken within the time allowed.", B)

# --- placement (xapi) -----------------------------------------------------------------------------
_e("NO_HOSTS_AVAILABLE", "", "There were no servers available to complete the specified operation.")
_e("HOST_NOT_LIVE", "", "This operation cannot be completed as the server is not live.")
_e("HOST_OFFLINE", "host", "You attempted an operation which involves a host which could not be contacted.")
_e("POOL_CHECK_FAILED", "divergences next", "The store and the hosts disagree (xetool's own: pool-check).")
_e("HOST_DISABLED", "host", "The specified server is disabled.")
_e("HOST_EVACUATE_IN_PROGRESS", "host", "This host is being evacuated.")
_e("VM_REQUIRES_SR", "vm sr", "You attempted to run a VM on a host that does not have access to an SR required by the VM.")
_e("VM_REQUIRES_NETWORK", "vm network", "You attempted to run a VM on a host which doesn't have a PIF on a Network needed by the VM.")
_e("VM_HVM_REQUIRED", "vm", "HVM is required for this operation.")
_e("VM_NO_VCPUS", "vm", "You need at least 1 VCPU to start a VM.")
_e("VM_TOOMANY_VCPUS", "vm", "Too many VCPUs to start this VM.")
_e("VM_MEMORY_SIZE_TOO_LOW", "vm", "The specified VM has too little memory to be started.")
_e("VM_DUPLICATE_VBD_DEVICE", "vm vbd device", "The specified VM has a duplicate VBD device and cannot be started.")
_e("HOST_NOT_ENOUGH_FREE_MEMORY", "needed available", "Not enough server memory is available to perform this operation.")
_e("VMS_FAILED_TO_COOPERATE", "vms", "The given VMs failed to release memory when instructed to do so.")
_e("HOST_NOT_ENOUGH_PCPUS", "vcpus pcpus", "The host does not have enough pCPUs to run the VM. It needs at least as many as the VM has vCPUs.")
_e("HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN", "", "This operation cannot be performed because it would invalidate VM failover planning such that the system would be unable to guarantee to restart protected VMs after a Host failure.")
_e("WLB_TIMEOUT", "timeout", "The workload balancing recommender did not answer in time.")
_e("WLB_INTERNAL_ERROR", "reason", "The workload balancing recommender gave an answer that could not be used.")

# --- the host half (xapi / xenopsd names where they exist) ----------------------------------------
_e("BOOTLOADER_FAILED", "vm msg", "The bootloader returned an error.")
_e("UNKNOWN_BOOTLOADER", "vm bootloader", "The requested bootloader is unknown.")
_e("FAILED_TO_START_EMULATOR", "vm name msg", "An emulator required to run this VM failed to start.")
_e("VM_SHUTDOWN_TIMEOUT", "vm timeout", "VM failed to shutdown before the timeout expired.", T)
_e("DEVICE_ATTACH_TIMEOUT", "type device seconds", "A timeout happened while attempting to attach a device to a VM.", T)
_e("DEVICE_DETACH_TIMEOUT", "type device seconds", "A timeout happened while attempting to detach a device from a VM.", T)
_e("HOTPLUG_FAILED", "type device reason", "The device's hotplug script reported an error.")
_e("SR_BACKEND_FAILURE", "sr reason", "The SR backend failed to complete the operation.")
_e("NETWORK_BRIDGE_FAILED", "network bridge reason", "The network's bridge could not be created.")
_e("HYPERVISOR_ERROR", "operation domid reason", "The hypervisor refused the operation.")
_e("PERMISSION_DENIED", "message", "Caller not allowed to perform this operation.")
_e("SIMULATOR_FAILED", "host reason", "The simulated host could not be started or reached.")
_e("XENSTORE_ERROR", "operation path error", "The xenstore server refused the request.")
_e("XENSTORE_TIMEOUT", "operation path seconds", "The xenstore server did not answer in time.", T)
_e("XENSTORE_UNREACHABLE", "socket reason", "The xenstore server cannot be reached.")
_e("EVENT_WAIT_TIMEOUT", "class seconds", "No matching object appeared before the timeout.", T)
_e("MESSAGE_METHOD_UNKNOWN", "method", "You tried to call a method that does not exist (a host agent's call).")
_e("MESSAGE_PARAMETER_COUNT_MISMATCH", "method expected received",
   "You tried to call a method with the incorrect number of parameters (a host agent's call).")
_e("HOST_AGENT_CONNECTION_LOST", "host reason",
   "The connection to the host's agent was lost during the call: what it did there is known once the host is resynced.")
_e("HOST_AGENT_PROTOCOL_MISMATCH", "host ours theirs",
   "The host's xetool agent speaks another protocol version: install the same xetool on the master and the host.")
_e("FIST", "step", "The step was made to fail on purpose (XETOOL_FIST fault injection).")
_e("INTERNAL_ERROR", "message", "The server failed to handle your request, due to an internal error.", ExitStatus.INTERNAL)

del U, B, T


class XeError(Exception):
    """A registry error with its parameters, positional (in registry order) or by name."""

    def __init__(self, code: str, *values: object, **named: object) -> None:
        spec = REGISTRY.get(code)
        if spec is None:  # a bug: report it as one, with the unknown code kept
            spec, values, named = REGISTRY["INTERNAL_ERROR"], (f"unregistered error {code}",), {}
        params = dict(zip(spec.params, (str(v) for v in values)))
        params.update({k: str(v) for k, v in named.items()})
        self.spec = spec
        self.params = params
        self.extra: dict[str, object] = {}  # more for --format json (a per-host table, ...)
        super().__init__(self.render())

    @property
    def code(self) -> str:
        return self.spec.code

    @property
    def status(self) -> ExitStatus:
        return self.spec.status

    def render(self) -> str:
        """The doc sentence, then `name: value` lines (missing ones as `<unknown>`), as xe prints."""
        lines = [self.spec.doc]
        for name in self.spec.params:
            lines.append(f"{name}: {self.params.get(name, '<unknown>')}")
        lines += [f"{k}: {v}" for k, v in self.params.items() if k not in self.spec.params]
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        """xapi's error form (the code, then its parameters as a list in the registry's order)
        with the sentence and the parameters by name beside them."""
        names = list(self.spec.params) + [k for k in self.params if k not in self.spec.params]
        return {"code": self.code, "params": [self.params.get(n, "") for n in names], "message": self.spec.doc,
                "fields": {n: self.params.get(n, "") for n in names}, **self.extra}
