"""Registry entries of the lifecycle commands (vm-start and the rest), kept apart from the
object commands because the master and host halves implement them."""

from __future__ import annotations

from xetool.cli.registry import Command

_VM = "xetool.cli.commands.vm:"
_DEV = "xetool.cli.commands.devices:"
_HOST = "xetool.cli.commands.hosts:"

COMMANDS: tuple[Command, ...] = (
    Command("vm-start", "Start the selected VM(s): choose a host (or on=HOST), build the domain there, and run it "
            "(or leave it paused with paused=true). --dry-run makes every check the start makes and prints them "
            "(the VM, its disks and VIFs, a verdict per host with its memory figures, the chooser's order), "
            "changes nothing, and exits as the start would: 0 only if it would start.", _VM + "vm_start",
            optn=("on", "paused", "force", "dry-run", "wait", "seed"), selector="vm", standard=True),
    Command("vm-shutdown", "Shut the selected VM(s) down: cleanly through the guest (timeout= seconds, default 60), "
            "or at once with --force.", _VM + "vm_shutdown", optn=("force", "timeout"), selector="vm", standard=True),
    Command("vm-reboot", "Reboot the selected VM(s) on the same host: cleanly, or with --force.", _VM + "vm_reboot",
            optn=("force", "timeout"), selector="vm", standard=True),
    Command("vm-pause", "Pause the selected running VM(s).", _VM + "vm_pause", selector="vm", standard=True),
    Command("vm-unpause", "Unpause the selected paused VM(s).", _VM + "vm_unpause", selector="vm", standard=True),
    Command("vm-assert-can-boot-here", "Check whether the VM can start on the host: every check, pass or reason.",
            _VM + "vm_assert_can_boot_here", reqd=("host",), selector="vm"),
    Command("vm-compute-memory-overhead", "Print the memory the hypervisor needs for the VM beside its own, in bytes.",
            _VM + "vm_compute_memory_overhead", selector="vm"),
    Command("vm-retrieve-wlb-recommendations", "Ask the workload balancing recommender where the VM should start.",
            _VM + "vm_retrieve_wlb_recommendations", selector="vm"),
    Command("vm-vnc", "Show how to reach the VM's console: its VNC server on the host's 127.0.0.1.",
            _VM + "vm_vnc", selector="vm"),
    Command("host-compute-free-memory", "Print the memory a new VM could get on the host now, in bytes.",
            _HOST + "host_compute_free_memory", selector="host"),
    Command("host-compute-memory-overhead", "Print the memory the host keeps for itself, in bytes.",
            _HOST + "host_compute_memory_overhead", selector="host"),
    Command("host-sim-list", "List the simulated hosts' processes: pid, live, xenstore socket.",
            _HOST + "host_sim_list"),
    Command("host-sim-start", "Start (or restart after a crash) a simulated host's process.",
            _HOST + "host_sim_start", selector="host"),
    Command("host-sim-stop", "Stop a simulated host's process: to its VMs, a host crash.",
            _HOST + "host_sim_stop", selector="host"),
    Command("host-xenstore-socket", "Print the host's xenstore socket, for XENSTORED_PATH=... xenstore-ls.",
            _HOST + "host_xenstore_socket", selector="host"),
    Command("host-xenstore-ls", "List the host's xenstore tree under path= (default /local/domain), with values.",
            _HOST + "host_xenstore_ls", optn=("path",), selector="host"),
    Command("vbd-attach", "Create a VBD joining a VDI to a VM and, if the VM runs, plug it.", _DEV + "vbd_attach",
            reqd=("vm-uuid", "vdi-uuid", "device"), optn=("bootable", "mode", "type", "unpluggable")),
    Command("vbd-plug", "Plug a VBD into its running VM.", _DEV + "vbd_plug", reqd=("uuid",)),
    Command("vbd-unplug", "Unplug a VBD from its running VM (--force skips the guest's handshake).",
            _DEV + "vbd_unplug", reqd=("uuid",), optn=("force",)),
    Command("vif-plug", "Plug a VIF into its running VM.", _DEV + "vif_plug", reqd=("uuid",)),
    Command("vif-unplug", "Unplug a VIF from its running VM.", _DEV + "vif_unplug", reqd=("uuid",), optn=("force",)),
)
