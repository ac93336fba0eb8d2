"""The xl configuration (xl.cfg(5)) of a domain as xetool creates it: no devices (the toolstack
adds those), and nothing libxl may destroy or restart on its own."""

from __future__ import annotations

import math
import re

from xetool.backends.base import DomainConfig
from xetool.errors import XeError

DEBIAN_QEMU_XEN = "/usr/libexec/xen-qemu-system-i386"  # qemu-system-xen; libxl's own default
_NAME_RE = re.compile(r"^[A-Za-z0-9_.:+-]{1,64}$")


def _flag(value: str | None) -> bool | None:
    if value is None:
        return None
    return value.strip().lower() in ("1", "true", "yes", "on")


def xl_config(config: DomainConfig, has_hvm: bool = True, vnc_password: str = "") -> str:
    """The xl configuration file (xl.cfg(5)) for a domain, with no devices: xetool adds those.
    `vnc_password`: what libxl's qemu asks VNC clients for (HVM)."""
    if not _NAME_RE.match(config.name):
        raise XeError("INVALID_VALUE", "name", config.name)
    if config.address_size is not None:
        raise XeError(
            "VALUE_NOT_SUPPORTED", "other-config:machine-address-size", config.address_size,
            "xl has no setting for the machine address size",
        )
    def mib(kib: float) -> int:  # xl takes whole MiB
        return max(1, math.ceil(kib / 1024))

    lines = {
        "name": f'"{config.name}"',
        "uuid": f'"{config.uuid}"',
        "type": '"hvm"' if config.hvm else '"pv"',
        "memory": str(max(1, config.memory_target_kib // 1024)),
        "maxmem": str(mib(config.memory_static_max_kib)),
        "vcpus": str(config.vcpus_at_startup),
        "maxvcpus": str(config.vcpus_max),
        "cpu_weight": str(config.sched_weight),
        "cap": str(config.sched_cap),
        # the toolstack reaps domains itself; nothing in libxl may destroy or restart one
        "on_poweroff": '"preserve"',
        "on_reboot": '"preserve"',
        "on_crash": '"preserve"',
        "on_watchdog": '"preserve"',
    }
    if config.vcpu_affinity:
        lines["cpus"] = '"' + ",".join(str(c) for c in sorted(set(config.vcpu_affinity))) + '"'
    if config.hvm:
        if not has_hvm:
            raise XeError("HYPERVISOR_ERROR", "create_domain", "", "this host's Xen has no HVM support (virt_caps)")
        p = config.platform
        for key in ("pae", "acpi", "apic", "viridian", "acpi_s3", "acpi_s4"):
            value = _flag(p.get(key))
            if value is not None:
                lines[key] = "1" if value else "0"
        if _flag(p.get("nx")) is False:
            lines["cpuid"] = '"host,nx=0"'
        if config.kernel and not config.kernel.endswith("hvmloader"):
            lines["firmware_override"] = f'"{config.kernel}"'
        # libxl starts the device model inside `xl create`: qemu-xen with VNC on 127.0.0.1
        lines["device_model_version"] = '"qemu-xen"'
        lines["device_model_override"] = f'"{DEBIAN_QEMU_XEN}"'
        lines["vnc"] = "1"
        lines["vnclisten"] = '"127.0.0.1"'
        if vnc_password:  # libxl starts qemu with password=on and sets it over QMP before any client
            lines["vncpasswd"] = f'"{vnc_password}"'
        lines["usb"] = "1"
        lines["usbdevice"] = '"tablet"'
        if config.shadow_multiplier != 1.0:
            # libxl_get_required_shadow_memory: 4 * (256 * vcpus + 2 * maxmem_MiB) KiB
            base_kib = 4 * (256 * config.vcpus_max + 2 * (config.memory_static_max_kib // 1024))
            lines["shadow_memory"] = str(mib(base_kib * config.shadow_multiplier))
    else:
        if not config.kernel:
            raise XeError("INVALID_VALUE", "PV-kernel", "")
        lines["kernel"] = _quote(config.kernel)
        if config.ramdisk:
            lines["ramdisk"] = _quote(config.ramdisk)
        if config.cmdline:
            lines["extra"] = _quote(config.cmdline)
    return "".join(f"{k} = {v}\n" for k, v in lines.items())


def _quote(value: str) -> str:
    if '"' in value or "\n" in value or "\\" in value:
        raise XeError("INVALID_VALUE", "xl-config-string", value)
    return f'"{value}"'
