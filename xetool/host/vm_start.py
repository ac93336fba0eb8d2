"""vm-start, the host's half: the seed's "On the pool slave" steps, in its order, each with its
undo. The master hands over (vm, host, task, paused) and nothing else; everything else is read
here, from the store and the host itself.
"""

from __future__ import annotations

import json
from pathlib import Path

from xetool import lifecycle, processes, tasks
from xetool.backends.base import Backend, DomainConfig
from xetool.clock import now_iso
from xetool.devices import bootloader, console, domain, vbd, vif
from xetool.errors import XeError
from xetool.host import memory, parameters, runtime, teardown
from xetool.host.backend import HOST_FIELDS, backend_for
from xetool.host.locks import FileLock, host_queue, vm_lock
from xetool.host.runtime import Runtime
from xetool.master.snapshot import is_hvm, read_vm
from xetool.paths import host_dir
from xetool.placement.memory import vm_compute_memory_overhead
from xetool.records import field, record, replace
from xetool.steps import Note, Runner, Step, checkpoint
from xetool.storage import file_sr
from xetool.store.db import Row, Store
from xetool.store.objects import sr_path
from xetool.xenstore.client import XsClient

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from typing import Any

    from xetool.steps import Observer


@record
class _Disk:
    vbd: Row
    path: Path | None
    other_config: dict[str, str] = field(default_factory=dict)


class HostStart:
    def __init__(self, store: Store, state_dir: Path, vm: str, host: str, task: str, paused: bool,
                 observer: Observer | None = None, force: bool = False) -> None:
        self.store, self.state_dir = store, state_dir
        self.vm_uuid, self.host_uuid, self.task, self.paused, self.force = vm, host, task, paused, force
        self.host_dir = host_dir(state_dir, host)  # the host's runtime files: boot, leases, logs
        self.runner = Runner(observer)
        self.locks: list[FileLock] = []
        with store.read() as txn:
            self.host = txn.must("host", host, HOST_FIELDS)
        self.backend: Backend = backend_for(state_dir, self.host)
        self.rt = Runtime(vm, host, task)
        self.vm: Row = {}
        self.record: dict[str, Any] = {}
        self.hvm = False
        self.disks: list[_Disk] = []
        self.config: DomainConfig | None = None
        self.domain_parameters: parameters.DomainParameters | None = None
        self.kernel: bootloader.Kernel | None = None
        self.reserved_kib = 0
        self._xs: XsClient | None = None

    @property
    def xs(self) -> XsClient:
        if self._xs is None:
            self._xs = XsClient(self.backend.xenstore_socket())
        return self._xs

    def _save(self) -> None:
        runtime.save(self.state_dir, self.rt)

    # --- serialisation ----------------------------------------------------------------------------
    def acquire_host_queue(self) -> str:
        from xetool.master import resync

        self.locks.append(host_queue(self.state_dir, self.host_uuid).acquire())
        # the first touch of the host: it must answer, and the store is matched with its domains
        # before anything else runs there (our own start's marks do not hold it back)
        repaired = resync.touch(self.store, self.state_dir, self.host, self.backend, own_task=self.task)
        return f"host {self.host['name_label']}" + (f"; resync: {len(repaired)} repaired" if repaired else "")

    def lock_vm(self) -> Note:
        self.locks.append(vm_lock(self.state_dir, self.vm_uuid).acquire())
        return None

    def unlock(self) -> str:
        while self.locks:
            self.locks.pop().release()
        if self._xs is not None:
            self._xs.close()
            self._xs = None
        return "VM unlocked, host queue released"

    def check_power_state(self) -> Note:
        with self.store.read() as txn:
            self.vm = txn.must("vm", self.vm_uuid)
        if self.vm["power_state"] != "Halted":
            raise XeError("VM_BAD_POWER_STATE", self.vm_uuid, "halted", self.vm["power_state"].lower())
        self.hvm = is_hvm(self.vm)
        self.rt.hvm = self.hvm
        return None

    def get_boot_record(self) -> str:
        text = self.vm["last_booted_record"]
        self.record = json.loads(text) if text else dict(self.vm)
        return "from the master's allocation" if text else "none: using the current record"

    def set_ha_always_run(self) -> str:
        if self.vm["ha_restart_priority"] != "restart":
            return "no HA restart priority: nothing to do"
        with self.store.write() as txn:
            txn.update("vm", self.vm_uuid, {"ha_always_run": True})
        return "ha-always-run set"

    def set_generic_bios_strings(self) -> str:
        if self.vm["bios_strings"]:
            return "the VM has BIOS strings"
        with self.store.write() as txn:
            txn.update("vm", self.vm_uuid, {"bios_strings": dict(domain.GENERIC_BIOS_STRINGS)})
        self.vm["bios_strings"] = dict(domain.GENERIC_BIOS_STRINGS)
        return "generic whitebox strings set"

    # --- start paused ------------------------------------------------------------------------------
    def check_vm_parameters(self) -> str:
        with self.store.read() as txn:
            devices = [v["userdevice"] for v in txn.select("vbd", ["userdevice"], {"VM": self.vm_uuid})]
        note = parameters.check_vm_parameter(self.record, devices)
        return f"{note}; " + parameters.assert_memory_constraints(self.record, self.force)

    def get_marked_vbds(self) -> str:
        with self.store.read() as txn:
            rows = [v for v in txn.select("vbd", None, {"VM": self.vm_uuid}) if self.task in v["current_operations"]]
            self.disks = []
            for v in rows:
                path, other = None, {}
                if v["VDI"]:
                    vdi = txn.get("vdi", v["VDI"])
                    if vdi is not None:
                        other = vdi["other_config"]
                        path = Path(sr_path(txn, vdi["SR"])) / vdi["location"]
                self.disks.append(_Disk(v, path, other))
        return f"{len(self.disks)} VBDs marked by the master"

    def reserve_memory(self) -> str:
        vm = self.record
        dp = self.domain_parameters = parameters.domain_parameters(vm)  # a bad one fails before memory is taken
        overhead = vm_compute_memory_overhead(read_vm_view(self.store, self.vm_uuid))
        lo = (vm["memory_dynamic_min"] + overhead) // 1024
        hi = (vm["memory_dynamic_max"] + overhead) // 1024
        self.rt.reservation, kib = memory.reserve(self.store, self.state_dir, self.backend, self.host_uuid,
                                                  self.vm_uuid, self.task, lo, hi)
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
        if self.rt.reservation:
            memory.release(self.store, self.rt.reservation)
            self.rt.reservation = ""
            self._save()
        if self.backend.is_live():  # guests squeezed for this start get their memory back
            memory.rebalance(self.store, self.state_dir, self.backend, self.host_uuid)

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
        self._save()
        tasks.note(self.store, self.task, host=self.host_uuid, domid=str(self.rt.domid))
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

    def set_domid(self) -> Note:
        with self.store.write() as txn:
            txn.update("vm", self.vm_uuid, {"domid": self.rt.domid})
        return None

    def unset_domid(self) -> None:
        with self.store.write() as txn:
            txn.update("vm", self.vm_uuid, {"domid": -1})

    def clear_device_status(self) -> Note:
        with self.store.write() as txn:
            for cls in ("vbd", "vif"):
                for uuid in txn.uuids(cls, {"VM": self.vm_uuid}):
                    txn.update(cls, uuid, {"currently_attached": False, "status_code": 0, "status_detail": ""})
        return None

    def check_vdis_exist(self) -> str:
        with self.store.read() as txn:
            for d in self.disks:
                if d.vbd["VDI"] and txn.get("vdi", d.vbd["VDI"], ["uuid"]) is None:
                    raise XeError("VDI_MISSING", "", d.vbd["VDI"])
        return f"{sum(1 for d in self.disks if d.vbd['VDI'])} VDIs"

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
        boot = next(((d.path, d.other_config) for d in self.disks if d.vbd["bootable"] and d.path), None)
        self.kernel = bootloader.choose(self.record, self.hvm, boot, self.host["backend"] == "simulator",
                                        self.host_dir / "boot" / self.vm_uuid)
        assert self.config is not None
        self.config = replace(self.config, kernel=self.kernel.kernel, ramdisk=self.kernel.ramdisk, cmdline=self.kernel.args)

    def build_domain(self) -> str:
        """The domain builder, which also sets vCPU affinity and the scheduler's weight and cap."""
        assert self.config is not None
        c = self.config
        self.backend.build_domain(self.rt.domid, c)
        domain.write_memory_reservation(self.xs, self.rt.domid, self.rt.reservation, self.reserved_kib)
        memory.transfer_to_domain(self.store, self.rt.reservation)
        self.rt.reservation = ""
        self._save()
        flags = ", ".join(f"{k}={c.platform[k]}" for k in ("nx", "viridian", "pae", "acpi", "apic", "acpi_s3", "acpi_s4")
                          if k in c.platform)
        return (f"built; affinity {list(c.vcpu_affinity) or 'all'}; weight {c.sched_weight} cap {c.sched_cap}; "
                f"{flags or 'default flags'}")

    def attach_vdis(self) -> str:
        """vdi_attach through the SR driver for each disk, then all the disks' xenstore entries."""
        disks = []
        with self.store.read() as txn:
            for d in self.disks:
                path = None
                if d.vbd["VDI"]:
                    vdi = txn.must("vdi", d.vbd["VDI"])
                    path = file_sr.attach(vdi["SR"], sr_path(txn, vdi["SR"]), vdi["uuid"], vdi["location"])
                disks.append(vbd.Disk(int(d.vbd["userdevice"]), path, d.vbd["mode"], d.vbd["type"], d.vbd["bootable"],
                                      d.vbd["uuid"], d.vbd["unpluggable"]))
        self.rt.vbds.update({disk.name: disk.userdevice for disk in disks})
        self._save()  # before the entries exist, so that an undo removes them whatever happens
        names = vbd.plug(self.xs, self.backend, self.rt.domid, self.hvm, disks)
        with self.store.write() as txn:
            for disk, name in zip(disks, names):
                txn.update("vbd", disk.name, {"device": name})
        return ", ".join(names) or "no disks"

    def create_vcpu_entries(self) -> str:
        domain.write_vcpu_availability(self.xs, self.rt.domid, self.record["VCPUs_max"])
        return f"cpu/0..{self.record['VCPUs_max'] - 1}/availability"

    def create_vifs(self) -> str:
        with self.store.read() as txn:
            vifs = [(v, txn.must("network", v["network"])) for v in txn.select("vif", None, {"VM": self.vm_uuid})
                    if self.task in v["current_operations"]]
        done = []
        nics = []
        for v, net in sorted(vifs, key=lambda p: int(p[0]["device"])):
            self.backend.ensure_bridge(net["bridge"])  # Xapi_network.attach_internal
            note = f"vif{self.rt.domid}.{v['device']} on {net['bridge']}"
            if net["other_config"].get("is_guest_installer_network") == "true":
                ip = vif.add_lease(self.host_dir, net["bridge"], v["MAC"], self.record["name_label"])
                self.rt.leases.append((net["bridge"], v["MAC"]))
                note += f" (lease {ip} for {v['MAC']})"  # beside the VIF that owns it
            nics.append(vif.Nic(int(v["device"]), v["MAC"], net["bridge"], v["MTU"], v["uuid"]))
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
        with self.store.read() as txn:
            nics = [(v["MAC"], txn.must("network", v["network"], ["bridge"])["bridge"])
                    for v in sorted(txn.select("vif", ["device", "MAC", "network"], {"VM": self.vm_uuid}),
                                    key=lambda v: int(v["device"]))][:8]
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

    def set_start_time(self) -> Note:
        with self.store.write() as txn:
            metrics = self.vm["metrics"]
            values = {"start_time": now_iso(), "last_updated": now_iso(), "VCPUs_number": self.record["VCPUs_at_startup"],
                      "memory_actual": (self.config.memory_target_kib if self.config else 0) * 1024}
            if metrics and txn.get("vm_metrics", metrics, ["uuid"]):
                txn.update("vm_metrics", metrics, values)
            else:
                txn.update("vm", self.vm_uuid, {"metrics": txn.insert("vm_metrics", {"VM": self.vm_uuid, **values})})
            txn.update("vm", self.vm_uuid, {"memory_target": values["memory_actual"]})
        return None

    def set_boot_record(self) -> Note:
        with self.store.write() as txn:
            txn.update("vm", self.vm_uuid, {"last_booted_record": json.dumps(self.record, sort_keys=True)})
        return None

    def delete_guest_metrics(self) -> str:
        with self.store.write() as txn:
            gone = txn.uuids("vm_guest_metrics", {"VM": self.vm_uuid})
            for uuid in gone:
                txn.delete("vm_guest_metrics", uuid)
            txn.update("vm", self.vm_uuid, {"guest_metrics": None})
        return f"{len(gone)} deleted"

    def set_resident_on(self) -> str:
        """Atomically clear scheduled_to_be_resident_on and set resident_on (and Paused)."""
        with self.store.write() as txn:
            txn.update("vm", self.vm_uuid, {"scheduled_to_be_resident_on": None, "resident_on": self.host_uuid,
                                            "power_state": "Paused"})
            for cls, attached in (("vbd", self.rt.vbds), ("vif", self.rt.vifs)):
                for uuid in attached:
                    txn.update(cls, uuid, {"currently_attached": True})
            lifecycle.update_allowed_operations(txn, "vm", self.vm_uuid)
        return f"resident on {self.host['name_label']}"

    def unset_resident_on(self) -> None:
        teardown.halt_in_store(self.store, self.vm_uuid)

    def unpause(self) -> str:
        domain.finish_build(self.xs, self.rt.domid)
        self.rt.started = self.paused
        if self.paused:
            self._save()
            return "left paused (paused=true)"
        self.backend.unpause(self.rt.domid)
        with self.store.write() as txn:
            txn.update("vm", self.vm_uuid, {"power_state": "Running"})
            lifecycle.update_allowed_operations(txn, "vm", self.vm_uuid)
        self.rt.started = True
        self._save()
        # the running guest's balloon driver makes its memory freeable: the broker reports it
        try:
            memory.publish(self.store, self.state_dir, self.backend, self.host_uuid)
        except XeError as err:  # the VM runs: a report that did not go out is no failure
            return f"running (memory figures not updated: {err.code})"
        return "running"

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
            s("set_domid", self.set_domid, self.unset_domid),
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
            s("set_resident_on", self.set_resident_on, self.unset_resident_on),
            s("unpause", self.unpause),
            s("unlock_vm", self.unlock),
        ]

    def run(self) -> None:
        try:
            self.runner.run(self.steps())
        except BaseException:
            runtime.remove(self.state_dir, self.host_uuid, self.vm_uuid) if self.rt.domid < 0 else None
            self.unlock()
            raise


def read_vm_view(store: Store, vm: str):  # type: ignore[no-untyped-def]
    with store.read() as txn:
        return read_vm(txn, vm)
