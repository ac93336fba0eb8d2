"""Registry entries of the lifecycle commands (vm-start and the rest), kept apart from the
object commands because the master and host halves implement them."""

from __future__ import annotations

from xetool.cli.registry import VBD_HELP, Command

_VM = "xetool.cli.commands.vm:"
_DEV = "xetool.cli.commands.devices:"
_HOST = "xetool.cli.commands.hosts:"
_MEM = "xetool.cli.commands.memory:"

START_HELP = (
    ("on", "The host to start on (name-label or uuid) instead of the chooser's pick; its checks still apply."),
    ("paused", "Build the domain and leave it paused (vm-unpause runs it)."),
    ("force", "Skip the host's pre-boot safety checks (memory pinning), as xapi's force does."),
    ("dry-run", "Make every check the start makes and print them, change nothing; exit 0 only if it would start."),
    ("seed", "An integer that makes the chooser's random order among equally good hosts reproducible."),
)
STOP_HELP = (
    ("force", "A hard stop at once, instead of asking the guest and waiting for it."),
    ("timeout", "Seconds to wait for the guest to shut down cleanly (default 60); exit 4 when they run out."),
)

COMMANDS: tuple[Command, ...] = (
    Command("vm-start", "Start the selected VM(s): choose a host (or on=HOST), build the domain there, and run it "
            "(or leave it paused with paused=true). --dry-run makes every check the start makes and prints them "
            "(the VM, its disks and VIFs, a verdict per host with its memory figures, the chooser's order), "
            "changes nothing, and exits as the start would: 0 only if it would start.", _VM + "vm_start",
            optn=("on", "paused", "force", "dry-run", "wait", "seed"), selector="vm", standard=True, param_help=START_HELP),
    Command("vm-shutdown", "Shut the selected VM(s) down: cleanly through the guest (timeout= seconds, default 60), "
            "or at once with --force.", _VM + "vm_shutdown", optn=("force", "timeout", "wait"), selector="vm", standard=True,
            param_help=STOP_HELP),
    Command("vm-reboot", "Reboot the selected VM(s) on the same host: cleanly, or with --force.", _VM + "vm_reboot",
            optn=("force", "timeout", "wait"), selector="vm", standard=True, param_help=STOP_HELP),
    Command("vm-pause", "Pause the selected running VM(s).", _VM + "vm_pause", optn=("wait",), selector="vm",
            standard=True),
    Command("vm-unpause", "Unpause the selected paused VM(s).", _VM + "vm_unpause", optn=("wait",), selector="vm",
            standard=True),
    Command("vm-assert-can-boot-here", "Check whether the VM can start on the host: every check, pass or reason.",
            _VM + "vm_assert_can_boot_here", reqd=("host",), selector="vm",
            param_help=(("host", "The host to check (name-label or uuid)."),)),
    Command("vm-compute-memory-overhead", "Print the memory the hypervisor needs for the VM beside its own, in bytes.",
            _VM + "vm_compute_memory_overhead", selector="vm"),
    Command("vm-memory-dynamic-range-set", "Set the VM's dynamic memory range (min= max=, sizes such as 512MiB). "
            "On a running VM its host's memory broker moves the VM's target into the range, ballooning other "
            "guests down when the new minimum needs their memory.", _MEM + "vm_memory_dynamic_range_set",
            reqd=("min", "max"), selector="vm",
            param_help=(("min", "The new dynamic minimum (bytes or K/M/G/TiB), at least static-min."),
                        ("max", "The new dynamic maximum, at most static-max."))),
    Command("vm-memory-target-set", "Set the VM's memory target (target=): its dynamic range pinned there; on a "
            "running VM through its host's memory broker.", _MEM + "vm_memory_target_set", reqd=("target",),
            selector="vm", param_help=(("target", "The memory the VM is to have (bytes or K/M/G/TiB), within its "
                                                  "static limits."),)),
    Command("vm-memory-limits-set", "Set all four memory limits of a halted VM (static-min= static-max= "
            "dynamic-min= dynamic-max=).", _MEM + "vm_memory_limits_set",
            reqd=("static-min", "static-max", "dynamic-min", "dynamic-max"), selector="vm",
            param_help=(("static-min", "The lowest memory the VM may ever have (bytes or K/M/G/TiB)."),
                        ("static-max", "The highest memory the VM may ever have."),
                        ("dynamic-min", "The least the memory broker may balloon the VM down to."),
                        ("dynamic-max", "The most the memory broker may give the VM."))),
    Command("vm-retrieve-wlb-recommendations", "Ask the workload balancing recommender where the VM should start.",
            _VM + "vm_retrieve_wlb_recommendations", selector="vm"),
    Command("vm-vnc", "Show how to reach the VM's console: its VNC server on the host's 127.0.0.1, and its password; "
            "for a remote host, the ssh -L command that forwards it here (--forward runs it).",
            _VM + "vm_vnc", selector="vm", optn=("forward", "local-port"),
            param_help=(("forward", "For a VM on a remote host: run the SSH forward in the foreground until "
                         "interrupted."),
                        ("local-port", "The port of this machine's 127.0.0.1 to forward (default: a free one)."))),
    Command("host-compute-free-memory", "Print the memory a new VM could get on the host now, in bytes.",
            _HOST + "host_compute_free_memory", selector="host"),
    Command("host-compute-memory-overhead", "Print the memory the host keeps for itself, in bytes.",
            _HOST + "host_compute_memory_overhead", selector="host"),
    Command("pool-check", "Compare the store with every host's domains (by VM uuid) and with itself: list each "
            "divergence (a VM recorded as running with no domain, an orphan domain, a VM of an earlier boot of its "
            "host, stale marks, reservations without tasks, tasks of dead processes) and exit 1 if there is one; "
            "--repair applies the resync, each repair a message (message-list).",
            "xetool.cli.commands.pool:pool_check", optn=("repair",),
            param_help=(("repair", "Apply the resync to each divergence found (without it nothing changes)."),)),
    Command("host-sim-list", "List the simulated hosts' processes: state (running, stopped, not-started), pid, "
            "xenstore socket; a listing like any other (params=, field filters, --minimal, --format json).",
            _HOST + "host_sim_list", optn=("params",), cls="host_sim", any_field=True, lists=True),
    Command("host-sim-start", "Start (or restart after a crash) a simulated host's process.",
            _HOST + "host_sim_start", selector="host"),
    Command("host-sim-stop", "Stop a simulated host's process: to its VMs, a host crash.",
            _HOST + "host_sim_stop", selector="host"),
    Command("host-agent", "Serve the host half of this machine over stdin and stdout (one JSON message a line; "
            "see docs/agent-protocol.md), for a pool master that reaches this host over SSH. Host-local "
            "state lives in the state directory; the master's store is never opened here.",
            _HOST + "host_agent", optn=("listen", "daemon", "stop"),
            param_help=(("listen", "Make sure the long-running agent runs (started, or replaced if it is another "
                         "xetool version) and print where it listens, as JSON; the master forwards its SSH "
                         "connection to that socket."),
                        ("daemon", "Be the long-running agent: listen on the state directory's agent.sock, a forked "
                         "child serving each connection of this user."),
                        ("stop", "Stop the long-running agent (the connections it serves finish first)."))),
    Command("host-xenstore-socket", "Print the host's xenstore socket, for XENSTORED_PATH=... xenstore-ls.",
            _HOST + "host_xenstore_socket", selector="host"),
    Command("host-xenstore-ls", "List the host's xenstore tree under path= (default /local/domain), with values.",
            _HOST + "host_xenstore_ls", optn=("path",), selector="host",
            param_help=(("path", "The xenstore path to list under (default /local/domain)."),)),
    Command("vbd-attach", "Create a VBD joining a VDI to a VM and, if the VM runs, plug it.", _DEV + "vbd_attach",
            reqd=("vm-uuid", "vdi-uuid", "device"), optn=("bootable", "mode", "type", "unpluggable"), param_help=VBD_HELP),
    Command("vbd-plug", "Plug a VBD into its running VM.", _DEV + "vbd_plug", reqd=("uuid",)),
    Command("vbd-unplug", "Unplug a VBD from its running VM (--force skips the guest's handshake).",
            _DEV + "vbd_unplug", reqd=("uuid",), optn=("force",),
            param_help=(("force", "Unplug without waiting for the guest to let go of the disk."),)),
    Command("vif-plug", "Plug a VIF into its running VM.", _DEV + "vif_plug", reqd=("uuid",)),
    Command("vif-unplug", "Unplug a VIF from its running VM.", _DEV + "vif_unplug", reqd=("uuid",), optn=("force",),
            param_help=(("force", "Unplug without waiting for the guest to let go of the interface."),)),
)
