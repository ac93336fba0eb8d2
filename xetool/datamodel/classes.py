"""The declarations: every class of the pool and every field it has.

Names and spellings follow xapi's datamodel so that the seed page, the reference and this file
can be read side by side. Memory is in bytes, as in xapi.
"""

from __future__ import annotations

from xetool import limits as L
from xetool.datamodel.types import ClassSpec, Field, Kind, Qualifier

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from typing import Any

RW, RO, DRO = Qualifier.RW, Qualifier.RO, Qualifier.DRO

POWER_STATES = ("Halted", "Paused", "Running", "Suspended")
VM_OPERATIONS = (
    "start", "start_on", "clean_shutdown", "hard_shutdown", "clean_reboot", "hard_reboot",
    "pause", "unpause", "destroy", "changing_dynamic_range", "changing_VCPUs", "changing_static_range",
    "changing_memory_limits", "changing_shadow_memory", "make_into_template", "snapshot", "clone",
)
VBD_OPERATIONS = ("attach", "plug", "unplug", "unplug_force", "pause", "unpause")
VIF_OPERATIONS = ("attach", "plug", "unplug")
HOST_OPERATIONS = ("vm_start", "vm_resume", "vm_migrate", "evacuate", "reboot", "shutdown", "provision")
CRASH_ACTIONS = ("destroy", "coredump_and_destroy", "restart", "coredump_and_restart", "preserve", "rename_restart")
SHUTDOWN_ACTIONS = ("destroy", "restart")
TASK_STATUSES = ("pending", "success", "failure", "cancelling", "cancelled")


def _f(name: str, kind: Kind, q: Qualifier, doc: str, default: Any = None, **kw: Any) -> Field:
    return Field(name, kind, q, doc, default, **kw)


def s(name: str, q: Qualifier, doc: str, default: str = "", **kw: Any) -> Field:
    return _f(name, Kind.STR, q, doc, default, **kw)


def i(name: str, q: Qualifier, doc: str, default: int = 0, **kw: Any) -> Field:
    return _f(name, Kind.INT, q, doc, default, **kw)


def b(name: str, q: Qualifier, doc: str, default: bool = False, **kw: Any) -> Field:
    return _f(name, Kind.BOOL, q, doc, default, **kw)


def e(name: str, q: Qualifier, doc: str, values: tuple[str, ...], default: str, **kw: Any) -> Field:
    return _f(name, Kind.ENUM, q, doc, default, values=values, **kw)


def ref(name: str, q: Qualifier, doc: str, cls: str, **kw: Any) -> Field:
    return _f(name, Kind.REF, q, doc, None, ref=cls, **kw)


def sset(name: str, q: Qualifier, doc: str, default: tuple[str, ...] = (), **kw: Any) -> Field:
    return _f(name, Kind.SET, q, doc, default, **kw)


def smap(name: str, q: Qualifier, doc: str, **kw: Any) -> Field:
    return _f(name, Kind.MAP, q, doc, {}, **kw)


def when(name: str, q: Qualifier, doc: str, **kw: Any) -> Field:
    return _f(name, Kind.DATETIME, q, doc, "", **kw)


def metric(name: str, kind: Kind, doc: str, default: Any) -> Field:
    """A VM field read from its vm_metrics record (xe shows them on the VM)."""
    return _f(name, kind, DRO, doc, default, via=("vm_metrics", "VM", name))


def back(name: str, doc: str, cls: str, key: str, **kw: Any) -> Field:
    """A set of refs derived from the foreign key `key` of `cls` (xapi's one-to-many relations)."""
    return _f(name, Kind.SET, DRO, doc, (), ref=cls, derived_from=(cls, key), **kw)


UUID = s("uuid", RO, "Unique identifier of the object.")
NAME = s("name_label", RW, "A human-readable name.")
DESCRIPTION = s("name_description", RW, "A notes field containing human-readable description.")
OTHER = smap("other_config", RW, "Additional configuration.")
TAGS = sset("tags", RW, "User-specified tags for categorisation purposes.")


def ops(values: tuple[str, ...]) -> tuple[Field, Field]:
    return (
        sset("allowed_operations", DRO, "Operations allowed in the current state (advisory).", values=values),
        smap("current_operations", DRO, "Operations in progress: task uuid -> operation."),
    )


POOL = ClassSpec("pool", "The pool: a set of hosts managed together.", (
    UUID, NAME, DESCRIPTION,
    ref("master", RO, "The host that acts as pool master.", "host"),
    ref("default_SR", RW, "The SR in which new disks are made by default.", "sr"),
    b("ha_enabled", RW, "True if HA failover planning is enforced."),
    i("ha_host_failures_to_tolerate", RW, "Host failures the HA plan must survive.", 0),
    b("ha_allow_overcommit", RW, "If true, placements that break the failover plan are allowed."),
    b("coordinator_bias", RW, "Prefer hosts other than the master when placing VMs.", True),
    s("wlb_url", RW, "Workload balancing recommender over HTTP (POST JSON); empty for none."),
    s("wlb_command", RW, "Workload balancing recommender command (JSON on stdin and stdout)."),
    b("wlb_enabled", RW, "True if the recommender is consulted before the default placement."),
    _f("wlb_timeout", Kind.FLOAT, RW, "Seconds to wait for the recommender.", 5.0),
    s("ssh_config", RW, "An ssh_config file for reaching the pool's remote hosts (ssh -F; empty: the user's own)."),
    s("ssh_identity", RW, "A private key for reaching the pool's remote hosts (ssh -i; empty: the user's own)."),
    OTHER, TAGS,
), list_params=("uuid", "name_label", "name_description", "master"))

HOST = ClassSpec("host", "A physical host running Xen, or a simulated one.", (
    UUID, NAME, DESCRIPTION,
    s("hostname", RO, "The host's hostname."),
    s("address", RW, "The host's management address. A host with an address (or an SSH alias) is reached over "
      "SSH, its half run by the agent there; with neither it runs on this machine."),
    s("ssh_user", RW, "The user SSH logs in as on the host (empty: ssh's own choice, from ssh_config or the "
      "local user)."),
    i("ssh_port", RW, "The port of the host's sshd (0: ssh's own choice, from ssh_config or 22).", 0,
      bounds=L.SSH_PORT),
    s("ssh_alias", RW, "A Host of the pool's ssh_config to reach the host by, instead of its address."),
    s("agent_command", RW, "The command ssh runs on the host to serve its half (empty: xetool host-agent)."),
    e("backend", RO, "How xetool drives this host's hypervisor.", ("simulator", "xen"), "simulator"),
    b("enabled", RO, "False while the host is disabled: no new VMs start on it.", True),
    b("live", DRO, "True if the host answered the last time it was asked.", True, cli="host-metrics-live"),
    s("boot_id", DRO, "The host's per-boot identity when the pool last resynchronised with it; "
      "VMs resident under an earlier boot are Halted.", hidden=True),
    i("memory_total", RO, "Total host memory, in bytes.", 0, bounds=L.HOST_MEMORY),
    i("memory_free", DRO, "Free host memory: what the hypervisor reports free less what the memory broker has "
      "reserved for domains being built, in bytes.", 0),
    i("memory_free_computed", DRO, "Memory a new VM could get on the host: free memory plus what balloonable "
      "guests could give back, less the memory broker's 72 MiB reserve, in bytes (host-compute-free-memory); "
      "-1 until the host's memory broker has reported.", -1),
    i("memory_overhead", DRO, "Memory used by the host itself (dom0 and the toolstack's reserve), in bytes.", 0),
    i("dom0_memory", RO, "Memory given to the control domain, in bytes.", 0, bounds=L.DOM0_MEMORY),
    i("cpu_count", RO, "Physical CPUs.", 1, cli="cpu-count", bounds=L.HOST_CPUS),
    smap("cpu_info", RO, "The host's CPUs as xe shows them: cpu_count, and what the backend knows (vendor, modelname).",
         cli="cpu_info"),
    sset("capabilities", RO, "Virtualisation capabilities: pv, hvm, hap.", default=("pv",)),
    *ops(HOST_OPERATIONS),
    back("resident_VMs", "VMs currently running on this host.", "vm", "resident_on", cli="resident-vms"),
    back("PBDs", "Physical block devices: the SRs this host sees.", "pbd", "host"),
    back("PIFs", "Physical interfaces: the networks this host reaches.", "pif", "host"),
    OTHER, TAGS,
), list_params=("uuid", "name_label", "name_description"))

VM = ClassSpec("vm", "A virtual machine (or a template).", (
    UUID, NAME, DESCRIPTION,
    e("power_state", DRO, "Current power state.", POWER_STATES, "Halted"),
    b("is_a_template", RW, "True if this is a template, which cannot be started."),
    b("is_control_domain", RO, "True for a host's control domain (dom0)."),
    *ops(VM_OPERATIONS),
    smap("blocked_operations", RW, "Operations refused with the given reason code."),
    ref("affinity", RW, "The host the VM would rather run on.", "host"),
    ref("resident_on", DRO, "The host the VM runs on.", "host"),
    ref("scheduled_to_be_resident_on", DRO, "The host chosen for a start in progress.", "host"),
    i("domid", DRO, "Domain id while the VM has a domain, else -1.", -1, cli="dom-id"),
    i("memory_static_max", RW, "Highest memory the VM may ever have, in bytes.", 256 << 20, bounds=L.VM_STATIC_MAX),
    i("memory_dynamic_max", RW, "Dynamic maximum memory, in bytes.", 256 << 20, bounds=L.VM_MEMORY),
    i("memory_dynamic_min", RW, "Dynamic minimum memory, in bytes.", 256 << 20, bounds=L.VM_MEMORY),
    i("memory_static_min", RW, "Lowest memory the VM may ever have, in bytes.", 128 << 20, bounds=L.VM_MEMORY),
    i("memory_overhead", DRO, "Memory the hypervisor needs beside the guest's own, in bytes.", 0),
    metric("memory_actual", Kind.INT, "Memory the guest actually has, in bytes (0 while halted).", 0),
    i("memory_target", DRO, "Memory the domain is balanced to while it runs, in bytes (0 while halted).", 0),
    i("VCPUs_max", RW, "Maximum number of vCPUs.", 1, bounds=L.VM_VCPUS),
    i("VCPUs_at_startup", RW, "vCPUs online at boot.", 1, bounds=L.VM_VCPUS),
    smap("VCPUs_params", RW, "vCPU parameters: mask (CPU list), weight, cap."),
    metric("VCPUs_number", Kind.INT, "vCPUs the running guest has (0 while halted).", 0),
    e("domain_type", RW, "The kind of domain.", ("hvm", "pv", "unspecified"), "unspecified"),
    s("HVM_boot_policy", RW, "HVM boot policy ('BIOS order' for HVM); empty for PV."),
    smap("HVM_boot_params", RW, "HVM boot parameters (order, firmware)."),
    _f("HVM_shadow_multiplier", Kind.FLOAT, RW, "Multiplier applied to the shadow memory.", 1.0),
    s("PV_kernel", RW, "Path in dom0 to the PV kernel."),
    s("PV_ramdisk", RW, "Path in dom0 to the PV ramdisk."),
    s("PV_args", RW, "Kernel command line."),
    s("PV_bootloader", RW, "Bootloader that extracts the kernel from the guest's disk (pygrub)."),
    s("PV_bootloader_args", RW, "Arguments to the bootloader."),
    smap("platform", RW, "Platform flags: nx, viridian, pae, acpi, apic, acpi_s3, acpi_s4, ..."),
    smap("bios_strings", RW, "BIOS strings given to the guest."),
    smap("xenstore_data", RW, "Keys written to the domain's vm-data/ in xenstore."),
    e("actions_after_shutdown", RW, "What to do when the guest shuts down.", SHUTDOWN_ACTIONS, "destroy"),
    e("actions_after_reboot", RW, "What to do when the guest reboots.", SHUTDOWN_ACTIONS, "restart"),
    e("actions_after_crash", RW, "What to do when the guest crashes.", CRASH_ACTIONS, "restart"),
    e("ha_restart_priority", RW, "HA restart priority.", ("", "restart", "best-effort"), ""),
    b("ha_always_run", RW, "True if HA (and the cron job in scripts/) keeps this VM running."),
    s("last_booted_record", DRO, "The VM's configuration when it last booted (JSON).", cli="last-boot-record",
      expensive=True),
    ref("suspend_VDI", RO, "The VDI holding the suspend image, if suspended.", "vdi", cli="suspend-VDI-uuid"),
    _f("possible_hosts", Kind.SET, DRO, "Hosts the VM could start on now (every placement check passes); "
       "the host it runs on while it runs.", (), ref="host", computed="xetool.master.snapshot:possible_hosts",
       expensive=True),
    metric("start_time", Kind.DATETIME, "When the VM last booted.", ""),
    metric("install_time", Kind.DATETIME, "When the VM was made.", ""),
    ref("metrics", DRO, "Metrics of the VM.", "vm_metrics"),
    ref("guest_metrics", DRO, "Metrics reported by the guest's agent.", "vm_guest_metrics"),
    i("start_delay", RW, "Seconds to wait after starting the VM (for ordered starts).", 0, bounds=L.START_DELAY),
    back("VBDs", "Virtual block devices.", "vbd", "VM"),
    back("VIFs", "Virtual network interfaces.", "vif", "VM"),
    OTHER, TAGS,
), list_params=("uuid", "name_label", "power_state"), list_filter=(("is_a_template", False),))

VM_METRICS = ClassSpec("vm_metrics", "Metrics of a VM, kept while it runs.", (
    UUID,
    ref("VM", RO, "The VM these metrics belong to.", "vm", cli="vm-uuid"),
    i("memory_actual", DRO, "Memory the guest actually has, in bytes.", 0),
    i("VCPUs_number", DRO, "vCPUs the guest has now.", 0),
    when("start_time", DRO, "When the VM last booted."),
    when("install_time", DRO, "When the VM was made."),
    when("last_updated", DRO, "When these metrics were last updated."),
    OTHER,
), list_params=("uuid", "VM", "start_time"))

VM_GUEST_METRICS = ClassSpec("vm_guest_metrics", "What the guest's agent reports.", (
    UUID,
    ref("VM", RO, "The VM these metrics belong to.", "vm", cli="vm-uuid"),
    smap("os_version", DRO, "The guest's operating system."),
    smap("PV_drivers_version", DRO, "Versions of the guest's PV drivers."),
    smap("networks", DRO, "Addresses the guest reports per interface."),
    b("live", DRO, "True while the guest's agent reports."),
    when("last_updated", DRO, "When the agent last reported."),
    OTHER,
), list_params=("uuid", "VM", "live"))

VBD = ClassSpec("vbd", "A virtual block device: a VDI plugged into a VM.", (
    UUID,
    ref("VM", RO, "The VM the disk belongs to.", "vm", cli="vm-uuid"),
    ref("VDI", RO, "The disk image; none for an empty CD drive.", "vdi", cli="vdi-uuid"),
    s("userdevice", RW, "The device number seen by the guest (0 = xvda/hda).", "0"),
    s("device", DRO, "The device name in the guest (xvda, hdb, ...)."),
    b("bootable", RW, "True if the VM may boot from this disk."),
    e("mode", RW, "Read-only or read-write.", ("RO", "RW"), "RW"),
    e("type", RW, "The kind of drive.", ("Disk", "CD", "Floppy"), "Disk"),
    b("unpluggable", RW, "True if the disk may be hot-unplugged.", True),
    b("empty", RO, "True for a CD drive with no disc."),
    b("currently_attached", DRO, "True while the disk is plugged into a running VM."),
    i("status_code", DRO, "Status of the last attach (0 = fine).", 0),
    s("status_detail", DRO, "What went wrong with the last attach."),
    *ops(VBD_OPERATIONS),
    OTHER,
), list_params=("uuid", "VM", "VDI", "userdevice", "empty"))

VDI = ClassSpec("vdi", "A virtual disk image, stored in an SR.", (
    UUID, NAME, DESCRIPTION,
    ref("SR", RO, "The SR the disk lives in.", "sr", cli="sr-uuid"),
    i("virtual_size", RO, "Size the guest sees, in bytes.", 0, bounds=L.VDI_SIZE),
    i("physical_utilisation", DRO, "Space the disk uses in its SR, in bytes.", 0),
    e("type", RO, "The kind of disk.", ("system", "user", "ephemeral", "suspend", "crashdump"), "user"),
    b("sharable", RO, "True if several VMs may use it at once."),
    b("read_only", RO, "True if the disk cannot be written."),
    s("location", RO, "Where the SR driver keeps it (for a file SR, the file name)."),
    b("managed", RO, "True if xetool manages the disk.", True),
    *ops(("attach", "clone", "copy", "destroy", "resize")),
    back("VBDs", "Virtual block devices that use the disk.", "vbd", "VDI"),
    OTHER, TAGS,
), list_params=("uuid", "name_label", "name_description", "virtual_size", "read_only", "sharable", "SR"))

SR = ClassSpec("sr", "A storage repository.", (
    UUID, NAME, DESCRIPTION,
    e("type", RO, "The SR driver.", ("file",), "file"),
    s("content_type", RO, "What the SR holds (user, iso).", "user"),
    b("shared", RO, "True if several hosts see it."),
    i("physical_size", DRO, "Capacity, in bytes.", 0),
    i("physical_utilisation", DRO, "Space used, in bytes.", 0),
    i("virtual_allocation", DRO, "Sum of the virtual sizes of its disks, in bytes.", 0),
    back("VDIs", "The disks in this SR.", "vdi", "SR"),
    back("PBDs", "The hosts' connections to this SR.", "pbd", "SR"),
    OTHER, TAGS,
), list_params=("uuid", "name_label", "name_description", "type", "content_type"))

PBD = ClassSpec("pbd", "A host's connection to an SR.", (
    UUID,
    ref("host", RO, "The host.", "host", cli="host-uuid"),
    ref("SR", RO, "The SR.", "sr", cli="sr-uuid"),
    smap("device_config", RO, "Driver configuration (for a file SR: path)."),
    b("currently_attached", DRO, "True if the host sees the SR now.", True),
    OTHER,
), list_params=("uuid", "host", "SR", "currently_attached"))

NETWORK = ClassSpec("network", "A virtual network: a bridge on each host that has a PIF on it.", (
    UUID, NAME, DESCRIPTION,
    s("bridge", RO, "The bridge's name in dom0."),
    i("MTU", RW, "MTU of the network.", 1500, bounds=L.NETWORK_MTU),
    back("VIFs", "Virtual interfaces on the network.", "vif", "network"),
    back("PIFs", "Physical interfaces on the network.", "pif", "network"),
    OTHER, TAGS,
), list_params=("uuid", "name_label", "name_description", "bridge"))

PIF = ClassSpec("pif", "A host's physical interface onto a network.", (
    UUID,
    s("device", RO, "The interface in dom0 (eth0)."),
    ref("host", RO, "The host.", "host", cli="host-uuid"),
    ref("network", RO, "The network.", "network", cli="network-uuid"),
    s("MAC", RO, "The interface's MAC address."),
    i("MTU", RO, "MTU.", 1500),
    i("VLAN", RO, "VLAN tag, or -1.", -1),
    b("management", RO, "True for the host's management interface."),
    b("currently_attached", DRO, "True if the interface is up.", True),
    OTHER,
), list_params=("uuid", "device", "VLAN", "MAC", "network", "currently_attached", "host"))

VIF = ClassSpec("vif", "A virtual network interface of a VM.", (
    UUID,
    s("device", RO, "The interface number in the guest (0 = eth0).", "0"),
    ref("VM", RO, "The VM.", "vm", cli="vm-uuid"),
    ref("network", RO, "The network.", "network", cli="network-uuid"),
    s("MAC", RO, "The interface's MAC address."),
    i("MTU", RO, "MTU.", 1500),
    e("locking_mode", RW, "Traffic filtering.", ("network_default", "locked", "unlocked", "disabled"), "network_default"),
    b("currently_attached", DRO, "True while the interface is plugged into a running VM."),
    i("status_code", DRO, "Status of the last attach (0 = fine).", 0),
    s("status_detail", DRO, "What went wrong with the last attach."),
    *ops(VIF_OPERATIONS),
    OTHER,
), list_params=("uuid", "device", "VM", "network"))

TASK = ClassSpec("task", "A long-running operation, and the process that runs it.", (
    UUID, NAME, DESCRIPTION,
    e("status", DRO, "Where the task is.", TASK_STATUSES, "pending"),
    _f("progress", Kind.FLOAT, DRO, "Fraction done, 0 to 1.", 0.0),
    s("current_step", DRO, "The named step being run."),
    when("created", DRO, "When the task began."),
    when("finished", DRO, "When the task ended."),
    i("pid", DRO, "Process that runs the task.", 0),
    s("process_start", DRO, "Start time of that process (guards against reused pids).", hidden=True),
    s("hostname", DRO, "Machine that runs the task."),
    s("result", DRO, "What the task returned."),
    sset("error_info", DRO, "The error code and its parameters, if it failed."),
    OTHER,
), list_params=("uuid", "name_label", "name_description", "status", "progress"))

MESSAGE = ClassSpec("message", "A message for the operator, such as VM_STARTED.", (
    UUID,
    s("name", RO, "The message's name (VM_STARTED, ...)."),
    i("priority", RO, "Priority: 1 is the most urgent, 5 informational.", 5),
    e("cls", RO, "The class of the object concerned.", ("VM", "Host", "SR", "Pool", "VMPP", "VMSS", "PVS_proxy", "VDI", "Certificate"), "VM", cli="class"),
    s("obj_uuid", RO, "The object concerned."),
    when("timestamp", RO, "When the message was made."),
    s("body", RO, "The text."),
), list_params=("uuid", "name", "priority", "cls", "obj_uuid", "timestamp", "body"))

CLASSES: dict[str, ClassSpec] = {
    c.name: c for c in (POOL, HOST, VM, VM_METRICS, VM_GUEST_METRICS, VBD, VDI, SR, PBD, NETWORK, PIF, VIF, TASK, MESSAGE)
}
