"""vm-start, the host's half: the seed's "On the pool slave" steps, in its order, each with its
undo. It works from the master's request alone (the VM and its boot record, the marked disks with
their paths, the VIFs with their bridges and MACs, the overhead, the task: xapi's create_metadata)
and from the host itself; it never opens the master's store. What the seed records in the
database (the domid, device states, resident-on, the start time, ...) is gathered into the
answer, and the master writes it in one transaction (master/host_half.py).
"""

from __future__ import annotations

from pathlib import Path

from xetool import processes
from xetool.backends.base import Backend, DomainConfig
from xetool.clock import now_iso
from xetool.devices import bootloader, console, domain, vbd, vif
from xetool.errors import XeError
from xetool.host import memory, parameters, runtime, teardown
from xetool.host.locks import FileLock, host_queue, host_vm_lock
from xetool.host.runtime import Runtime
from xetool.host.side import HostSide
from xetool.records import replace
from xetool.steps import Note, Runner, Step, checkpoint
from xetool.storage import file_sr
from xetool.xenstore.client import XsClient

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from typing import Any

FOR_THE_MASTER = "in the answer, for the master's record"


class StepEvents:
    """A steps.Observer that streams each step to the master as an event."""

    def __init__(self, side: HostSide) -> None:
        self.side = side

    def step_started(self, index: int, total: int, name: str) -> None:
        self.side.emit({"event": "step", "index": index, "total": total, "name": name})

    def step_done(self, name: str, seconds: float, note: Note) -> None:
        self.side.emit({"event": "done", "name": name, "seconds": seconds, "note": note})

    def step_failed(self, name: str, seconds: float, error: BaseException) -> None:
        self.side.emit({"event": "failed", "name": name, "seconds": seconds, "error": _error(error)})

    def step_undone(self, name: str, error: BaseException | None) -> None:
        self.side.emit({"event": "undo", "name": name, "error": None if error is None else _error(error)})


def _error(error: BaseException) -> dict[str, Any]:
    from xetool.host.calls import error_message

    if isinstance(error, XeError):
        return error_message(error)
    return {"code": "INTERNAL_ERROR", "fields": {"message": repr(error)}}


def handle(side: HostSide, args: dict[str, Any]) -> dict[str, Any]:
    start = HostStart(side, args)
    start.run()
    return start.answer


class HostStart:
    def __init__(self, side: HostSide | None, req: dict[str, Any]) -> None:
        """Cheap, no I/O: the steps do the work (a test may list them without a host)."""
        self.side = side
        self.req = req
        self.vm_uuid: str = req.get("vm", "")
        self.task: str = req.get("task", "")
        self.paused, self.force = bool(req.get("paused")), bool(req.get("force"))
        self.hvm = bool(req.get("hvm"))
        self.runner = Runner(StepEvents(side) if side is not None else None)
        self.locks: list[FileLock] = []
        self.rt = Runtime(self.vm_uuid, side.uuid if side else "", self.task)
        self.vm: dict[str, Any] = {}
        self.record: dict[str, Any] = {}
        self.disks: list[dict[str, Any]] = []
        self.config: DomainConfig | None = None
        self.domain_parameters: parameters.DomainParameters | None = None
        self.kernel: bootloader.Kernel | None = None
        self.reserved_kib = 0
        self._xs: XsClient | None = None
        self.answer: dict[str, Any] = {"bios_strings": None, "ha_always_run": None, "devices": {}}

    @property
    def backend(self) -> Backend:
        assert self.side is not None
        return self.side.backend

    @property
    def host_dir(self) -> Path:
        assert self.side is not None
        return self.side.dir

    @property
    def state_dir(self) -> Path:
        assert self.side is not None
        return self.side.state_dir

    @property
    def xs(self) -> XsClient:
        if self._xs is None:
            self._xs = XsClient(self.backend.xenstore_socket())
        return self._xs

    def _save(self) -> None:
        runtime.save(self.state_dir, self.rt)

    # --- serialisation ----------------------------------------------------------------------------
    def acquire_host_queue(self) -> str:
        """The host's queue; a simulated host that does not run is started (the master has
        resynced the host before sending the request)."""
        self.backend.ensure_running()
        self.locks.append(host_queue(self.host_dir).acquire())
        return f"host {self.side.name if self.side else ''}"

    def lock_vm(self) -> Note:
        self.locks.append(host_vm_lock(self.host_dir, self.vm_uuid).acquire())
        return None

    def unlock(self) -> str:
        while self.locks:
            self.locks.pop().release()
        if self._xs is not None:
            self._xs.close()
            self._xs = None
        return "VM unlocked, host queue released"

    def check_power_state(self) -> Note:
        """Halted in the master's record, and no domain of the VM on this host."""
        self.vm = dict(self.req["record"])
        if self.vm["power_state"] != "Halted":
            raise XeError("VM_BAD_POWER_STATE", self.vm_uuid, "halted", self.vm["power_state"].lower())
        info = self.backend.find_domain(self.vm_uuid)
        if info is not None:
            raise XeError("VM_BAD_POWER_STATE", self.vm_uuid, "halted", f"running (domain {info.domid} on this host)")
        self.rt.hvm = self.hvm
        return None

    def get_boot_record(self) -> str:
        boot = self.req["boot_record"]
        self.record = dict(boot) if boot else dict(self.vm)
        return "from the master's allocation" if boot else "none: using the current record"

    def set_ha_always_run(self) -> str:
        if self.vm["ha_restart_priority"] != "restart":
            return "no HA restart priority: nothing to do"
        self.answer["ha_always_run"] = True
        return "ha-always-run set " + FOR_THE_MASTER

    def set_generic_bios_strings(self) -> str:
        if self.vm["bios_strings"]:
            return "the VM has BIOS strings"
        self.vm["bios_strings"] = dict(domain.GENERIC_BIOS_STRINGS)
        self.answer["bios_strings"] = self.vm["bios_strings"]
        return "generic whitebox strings set " + FOR_THE_MASTER

    # --- start paused ------------------------------------------------------------------------------
    def check_vm_parameters(self) -> str:
        note = parameters.check_vm_parameter(self.record, list(self.req["userdevices"]))
        return f"{note}; " + parameters.assert_memory_constraints(self.record, self.force)

    def get_marked_vbds(self) -> str:
        self.disks = list(self.req["disks"])
        return f"{len(self.disks)} VBDs marked by the master"

    def reserve_memory(self) -> str:
        assert self.side is not None
        vm = self.record
        dp = self.domain_parameters = parameters.domain_parameters(vm)  # a bad one fails before memory is taken
        overhead = int(self.req["overhead"])
        lo = (vm["memory_dynamic_min"] + overhead) // 1024
        hi = (vm["memory_dynamic_max"] + overhead) // 1024
        self.rt.reservation, kib = memory.reserve(self.side, self.vm_uuid, self.task, lo, hi)
        self.reserved_kib = kib
        self._save()
        target = min(vm["memory_dynamic_max"] // 1024, kib - overhead // 1024)
        self.config = DomainConfig(
            uuid=self.vm_uuid, name=vm["name_label"], hvm=self.hvm, memory_static_max_kib=vm["memory_static_max"] // 1024,
            memory_target_kib=target, vcpus_max=vm["VCPUs_max"], vcpus_at_startup=vm["VCPUs_at_startup"],
            shadow_multiplier=vm["HVM_shadow_multiplier"], platform=dict(vm["platform"]),
            vcpu_affinity=dp.vcpu_affinity, sched_weight=dp.sched_weight, sched_cap=dp.sched_cap,
        )
        return f"{kib} KiB reserved (range {lo}..{hi} KiB)"

    def release_reservation(self) -> None:
        assert self.side is not None
        if self.rt.reservation:
            memory.release(self.side, [self.rt.reservation])
            self.rt.reservation = ""
            self._save()
        if self.backend.is_live():  # guests squeezed for this start get their memory back
            memory.rebalance(self.side)

    def check_hvm_support(self) -> str:
        if not self.hvm:
            return "PV guest: no HVM needed"
        if "hvm" not in self.backend.physinfo().capabilities:
            raise XeError("VM_HVM_REQUIRED", self.vm_uuid)
        return "the host supports HVM"

    def create_domain(self) -> str:
        assert self.config is not None
        if self.backend.kernel_at_create and self.kernel is None:
            self._choose_kernel()  # `xl create` builds the domain at once: it needs the kernel now
        self.rt.domid = self.backend.create_domain(self.config)
        checkpoint("domain_created")  # the window a resync by uuid closes: a domain not yet recorded
        self._save()  # the host's record of the domain: a janitor or a resync finds it by the task
        return f"domid {self.rt.domid}"

    def destroy_domain(self) -> None:
        teardown.release_on_host(self.state_dir, self.backend, self.rt)
        self.rt.domid, self.rt.vbds, self.rt.vifs, self.rt.leases = -1, {}, {}, []
        self.rt.dm_pid = self.rt.console_pid = 0
        self._save()

    def write_domain_xenstore(self) -> str:
        vm = self.record
        params = vm["VCPUs_params"]
        assert self.config is not None
        domain.write_domain_entries(
            self.xs, self.rt.domid, self.vm_uuid, vm["name_label"], self.hvm, vm["platform"], self.vm["bios_strings"],
            vm["xenstore_data"], vm["VCPUs_max"], vm["VCPUs_at_startup"], int(params.get("weight", 256)),
            int(params.get("cap", 0)), self.config.memory_target_kib)
        return f"/local/domain/{self.rt.domid}: platform/, bios-strings/, no devices yet"

    def set_domid(self) -> str:
        self.answer["domid"] = self.rt.domid
        return f"domid {self.rt.domid} {FOR_THE_MASTER}"

    def clear_device_status(self) -> str:
        return "every VBD and VIF not attached " + FOR_THE_MASTER

    def check_vdis_exist(self) -> str:
        for d in self.disks:
            if d["vdi"] and not d["vdi_exists"]:
                raise XeError("VDI_MISSING", "", d["vdi"])
        return f"{sum(1 for d in self.disks if d['vdi'])} VDIs"

    def set_machine_address_size(self) -> str:
        assert self.domain_parameters is not None
        size = self.domain_parameters.address_size
        if size is None:
            return "not set in other-config"
        assert self.config is not None
        self.config = replace(self.config, address_size=size)
        return f"{size} bits"

    def create_kernel(self) -> str:
        if self.kernel is not None:
            return f"{self.kernel.source}: {self.kernel.kernel} (chosen for create_domain)"
        self._choose_kernel()
        assert self.kernel is not None
        return f"{self.kernel.source}: {self.kernel.kernel}"

    def _choose_kernel(self) -> None:
        boot = next(((Path(d["path"]), d["other_config"]) for d in self.disks if d["bootable"] and d["path"]), None)
        assert self.side is not None
        self.kernel = bootloader.choose(self.record, self.hvm, boot, self.side.host.get("backend") == "simulator",
                                        self.host_dir / "boot" / self.vm_uuid)
        assert self.config is not None
        self.config = replace(self.config, kernel=self.kernel.kernel, ramdisk=self.kernel.ramdisk, cmdline=self.kernel.args)

    def build_domain(self) -> str:
        """The domain builder, which also sets vCPU affinity and the scheduler's weight and cap."""
        assert self.config is not None
        c = self.config
        self.backend.build_domain(self.rt.domid, c)
        domain.write_memory_reservation(self.xs, self.rt.domid, self.rt.reservation, self.reserved_kib)
        assert self.side is not None
        memory.transfer_to_domain(self.side, self.rt.reservation, self.rt.domid)
        self.rt.reservation = ""
        self._save()
        flags = ", ".join(f"{k}={c.platform[k]}" for k in ("nx", "viridian", "pae", "acpi", "apic", "acpi_s3", "acpi_s4")
                          if k in c.platform)
        return (f"built; affinity {list(c.vcpu_affinity) or 'all'}; weight {c.sched_weight} cap {c.sched_cap}; "
                f"{flags or 'default flags'}")

    def attach_vdis(self) -> str:
        """vdi_attach through the SR driver for each disk, then all the disks' xenstore entries."""
        disks = []
        for d in self.disks:
            path = file_sr.attach(d["sr"], d["sr_path"], d["vdi"], d["location"]) if d["vdi"] else None
            disks.append(vbd.Disk(int(d["userdevice"]), path, d["mode"], d["type"], d["bootable"], d["uuid"],
                                  d["unpluggable"]))
        self.rt.vbds.update({disk.name: disk.userdevice for disk in disks})
        self._save()  # before the entries exist, so that an undo removes them whatever happens
        names = vbd.plug(self.xs, self.backend, self.rt.domid, self.hvm, disks)
        self.answer["devices"] = {disk.name: name for disk, name in zip(disks, names)}
        return ", ".join(names) or "no disks"

    def create_vcpu_entries(self) -> str:
        domain.write_vcpu_availability(self.xs, self.rt.domid, self.record["VCPUs_max"])
        return f"cpu/0..{self.record['VCPUs_max'] - 1}/availability"

    def create_vifs(self) -> str:
        done = []
        nics = []
        for v in sorted(self.req["vifs"], key=lambda v: int(v["device"])):
            self.backend.ensure_bridge(v["bridge"])  # Xapi_network.attach_internal
            note = f"vif{self.rt.domid}.{v['device']} on {v['bridge']}"
            if v["guest_installer"]:
                ip = vif.add_lease(self.host_dir, v["bridge"], v["mac"], self.record["name_label"])
                self.rt.leases.append((v["bridge"], v["mac"]))
                note += f" (lease {ip} for {v['mac']})"  # beside the VIF that owns it
            nics.append(vif.Nic(int(v["device"]), v["mac"], v["bridge"], int(v["mtu"]), v["uuid"]))
            done.append(note)
        self.rt.vifs.update({nic.name: nic.device for nic in nics})
        self._save()  # before the entries exist, so that an undo removes them whatever happens
        vif.plug(self.xs, self.backend, self.rt.domid, nics)
        return ", ".join(done) or "no VIFs"

    def plug_pci_devices(self) -> str:
        pci = self.record["other_config"].get("pci", "")
        if not pci:
            return "no PCI devices"
        if self.hvm:
            return "HVM guest: PCI devices go through the device model"
        h = f"/local/domain/0/backend/pci/{self.rt.domid}/0"
        devs = [p.split("/")[-1] for p in pci.split(",") if p]
        values = {f"{h}/frontend": f"/local/domain/{self.rt.domid}/device/pci/0", f"{h}/frontend-id": str(self.rt.domid),
                  f"{h}/online": "1", f"{h}/state": "1", f"{h}/num_devs": str(len(devs)),
                  f"/local/domain/{self.rt.domid}/device/pci/0/backend": h,
                  f"/local/domain/{self.rt.domid}/device/pci/0/backend-id": "0",
                  f"/local/domain/{self.rt.domid}/device/pci/0/state": "1"}
        for n, dev in enumerate(devs):
            values[f"{h}/dev-{n}"] = dev
        self.xs.write_many(values)
        return f"pcifront/pciback for {', '.join(devs)}"

    def set_cpus_online(self) -> str:
        domain.set_cpus_online(self.xs, self.rt.domid, self.record["VCPUs_at_startup"], self.record["VCPUs_max"])
        if self.hvm:
            return f"{self.record['VCPUs_at_startup']} online (HVM guests do not hotplug)"
        return f"{self.record['VCPUs_at_startup']} of {self.record['VCPUs_max']} online"

    def start_device_model(self) -> str:
        if not self.hvm:
            return "PV guest: no device model"
        nics = [(mac, bridge) for mac, bridge in self.req["dm_nics"]][:8]
        log = self.host_dir / "logs" / f"qemu-dm-{self.rt.domid}.log"
        self.rt.dm_pid, self.rt.vnc_port = console.spawn(self.backend, "device-model", self.rt.domid, nics, log,
                                                         self.vm_uuid, "qemu-dm", self.xs, "image/device-model-pid",
                                                         console.secret_file(self.host_dir, self.rt.domid))
        self.rt.dm_start = processes.start_time(self.rt.dm_pid)
        self._save()
        return f"pid {self.rt.dm_pid}, VNC 127.0.0.1:{self.rt.vnc_port}, {len(nics)} RTL8139 NICs"

    def start_console_server(self) -> str:
        if self.hvm:
            return "HVM guest: the device model serves the console"
        log = self.host_dir / "logs" / f"vncterm-{self.rt.domid}.log"
        self.rt.console_pid, self.rt.vnc_port = console.spawn(self.backend, "console", self.rt.domid, [], log,
                                                              self.vm_uuid, "vncterm", self.xs, "vncterm-pid",
                                                              console.secret_file(self.host_dir, self.rt.domid))
        self.rt.console_start = processes.start_time(self.rt.console_pid)
        self._save()
        return f"pid {self.rt.console_pid}, VNC 127.0.0.1:{self.rt.vnc_port}"

    def write_memory_dynamic_range(self) -> str:
        lo, hi = self.record["memory_dynamic_min"] // 1024, self.record["memory_dynamic_max"] // 1024
        domain.write_memory_range(self.xs, self.rt.domid, lo, hi)
        return f"{lo}..{hi} KiB"

    def set_start_time(self) -> str:
        self.answer["start_time"] = now_iso()
        self.answer["memory_actual"] = (self.config.memory_target_kib if self.config else 0) * 1024
        self.answer["vcpus"] = self.record["VCPUs_at_startup"]
        return f"{self.answer['start_time']} {FOR_THE_MASTER}"

    def set_boot_record(self) -> str:
        self.answer["boot_record"] = self.record
        return FOR_THE_MASTER

    def delete_guest_metrics(self) -> str:
        return "the VM's guest metrics deleted " + FOR_THE_MASTER

    def set_resident_on(self) -> str:
        """resident-on this host and Paused; the master clears scheduled-to-be-resident-on in
        the same transaction."""
        self.answer.update(power_state="Paused", attached_vbds=sorted(self.rt.vbds), attached_vifs=sorted(self.rt.vifs),
                           vnc_port=self.rt.vnc_port)
        return f"resident on {self.side.name if self.side else ''} {FOR_THE_MASTER}"

    def unpause(self) -> str:
        from xetool.host.calls import record_result

        assert self.side is not None
        domain.finish_build(self.xs, self.rt.domid)
        if not self.paused:
            self.backend.unpause(self.rt.domid)
            self.answer["power_state"] = "Running"
        # the start is done on the host: its result is kept before the runtime record says so,
        # so a master that dies now finds it (vm_recover), and a repeated request gets it
        record_result(self.side, self.task, self.answer)
        self.rt.started = True
        self._save()
        if self.paused:
            return "left paused (paused=true)"
        # the running guest's balloon driver makes its memory freeable: the broker reports it
        try:
            memory.publish(self.side)
        except XeError as err:  # the VM runs: a report that did not go out is no failure
            return f"running (memory figures not updated: {err.code})"
        return "running"

    def forget_result(self) -> None:
        from xetool.host.calls import forget_result

        if self.side is not None:
            forget_result(self.side, self.task)

    # ---------------------------------------------------------------------------------------------
    def steps(self) -> list[Step]:
        s = Step
        return [
            s("acquire_host_queue", self.acquire_host_queue, self.unlock),
            s("lock_vm", self.lock_vm, self.unlock),
            s("check_power_state", self.check_power_state),
            s("get_boot_record", self.get_boot_record),
            s("set_ha_always_run", self.set_ha_always_run),
            s("set_generic_bios_strings", self.set_generic_bios_strings),
            s("check_vm_parameters", self.check_vm_parameters),
            s("get_marked_vbds", self.get_marked_vbds),
            s("reserve_memory", self.reserve_memory, self.release_reservation),
            s("check_hvm_support", self.check_hvm_support),
            s("create_domain", self.create_domain, self.destroy_domain),
            s("write_domain_xenstore", self.write_domain_xenstore),
            s("set_domid", self.set_domid),
            s("clear_device_status", self.clear_device_status),
            s("check_vdis_exist", self.check_vdis_exist),
            s("set_machine_address_size", self.set_machine_address_size),
            s("create_kernel", self.create_kernel),
            s("build_domain", self.build_domain),
            s("attach_vdis", self.attach_vdis),
            s("create_vcpu_entries", self.create_vcpu_entries),
            s("create_vifs", self.create_vifs),
            s("plug_pci_devices", self.plug_pci_devices),
            s("set_cpus_online", self.set_cpus_online),
            s("start_device_model", self.start_device_model),
            s("start_console_server", self.start_console_server),
            s("write_memory_dynamic_range", self.write_memory_dynamic_range),
            s("set_start_time", self.set_start_time),
            s("set_boot_record", self.set_boot_record),
            s("delete_guest_metrics", self.delete_guest_metrics),
            s("set_resident_on", self.set_resident_on),
            s("unpause", self.unpause, self.forget_result),
            s("unlock_vm", self.unlock),
        ]

    def run(self) -> None:
        try:
            self.runner.run(self.steps())
        except BaseException:
            runtime.remove(self.state_dir, self.rt.host, self.vm_uuid) if self.rt.domid < 0 else None
            self.unlock()
            raise
