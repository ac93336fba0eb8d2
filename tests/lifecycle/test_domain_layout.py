"""The domain's xenstore tree matches what xenopsd writes (issue 13): a PV guest with one disk
and one NIC is started on the simulator and its tree compared with the recorded list of the keys
xenopsd writes (tests/data/xenopsd-pv-domain-keys.txt); then the values that follow the VM's
record, and the clean-up of everything added when the VM stops."""

from __future__ import annotations

from pathlib import Path

from conftest import Pool, make_pool

from xetool.devices.domain import GENERIC_BIOS_STRINGS
from xetool.xenstore.client import XsClient

KEYS = Path(__file__).resolve().parents[1] / "data" / "xenopsd-pv-domain-keys.txt"

POOL = """
[pool]
name-label = "layout"
master = "host1"
[[host]]
name-label = "host1"
memory = "8GiB"
dom0-memory = "1GiB"
cpus = 4
capabilities = ["pv"]
[[sr]]
name-label = "files"
type = "file"
shared = true
[[network]]
name-label = "lan"
bridge = "xenbr0"
[[vm]]
name-label = "pv1"
memory = "512MiB"
memory-dynamic-min = "384MiB"
vcpus = 2
PV-kernel = "/boot/vmlinuz-guest"
  [[vm.disk]]
  device = 0
  size = "1GiB"
  sr = "files"
  bootable = true
  [[vm.vif]]
  device = 0
  network = "lan"
"""


def recorded_keys() -> list[str]:
    return [line.split()[0] for line in KEYS.read_text().splitlines() if line.strip() and not line.startswith("#")]


def tree(xs: XsClient, top: str) -> dict[str, str]:
    """Every node under `top` (included) with its value."""
    out = {top: xs.read(top)}
    for child in xs.ls(top):
        out |= tree(xs, f"{top}/{child}" if top != "/" else f"/{child}")
    return out


def test_started_pv_domain_has_every_key_xenopsd_writes(tmp_path: Path) -> None:
    pool = make_pool(tmp_path / "state", POOL)
    try:
        vm = pool.uuid("vm", "pv1")
        pool.xe("vm-param-set", f"uuid={vm}", "VCPUs-at-startup=1")  # VCPUs_max stays 2
        vbd = pool.devices("vbd", vm)[0]["uuid"]
        pool.xe("vbd-param-set", f"uuid={vbd}", "unpluggable=false")
        pool.xe("vm-start", "vm=pv1")
        row = pool.row("vm", vm)
        domid = row["domid"]
        subst = {"<domid>": str(domid), "<uuid>": vm, "<vbd>": "51712", "<vif>": "0"}
        expected = []
        for key in recorded_keys():
            for k, v in subst.items():
                key = key.replace(k, v)
            expected.append(key)
        with XsClient(pool.backend(row["resident_on"]).xenstore_socket()) as xs:
            nodes: dict[str, str] = {}
            for top in (f"/local/domain/{domid}", f"/vm/{vm}", f"/xenops/domain/{domid}", f"/libxl/{domid}",
                        f"/xapi/{vm}", f"/local/domain/0/backend/vbd/{domid}", f"/local/domain/0/backend/vif/{domid}"):
                nodes |= tree(xs, top)
            missing = [k for k in expected if k not in nodes]
            assert missing == [], "keys xenopsd writes that the started domain lacks:\n" + "\n".join(missing)
            # xenopsd's own trees hold nothing the list does not name
            stray = [k for k in nodes if k.startswith((f"/xapi/{vm}/private", f"/xenops/")) and k not in expected]
            stray = [k for k in stray if not any(e.startswith(k + "/") for e in expected)]  # parents of listed keys
            assert stray == []

            h = f"/local/domain/{domid}"
            assert nodes[f"{h}/platform/vcpu/number"] == "2" and nodes[f"{h}/platform/vcpu/current"] == "1"
            assert [nodes[f"{h}/cpu/{n}/availability"] for n in (0, 1)] == ["online", "offline"]
            mem = {k: int(nodes[f"{h}/memory/{k}"]) for k in ("static-max", "target", "initial-target",
                                                             "dynamic-min", "dynamic-max", "initial-reservation")}
            assert mem["static-max"] == mem["dynamic-max"] == 512 * 1024 and mem["dynamic-min"] == 384 * 1024
            assert mem["initial-target"] == mem["target"]
            assert mem["dynamic-min"] <= mem["initial-target"] <= mem["dynamic-max"] < mem["initial-reservation"]
            assert {k: nodes[f"{h}/bios-strings/{k}"] for k in GENERIC_BIOS_STRINGS} == GENERIC_BIOS_STRINGS
            assert nodes[f"/vm/{vm}/domains/{domid}"] == h
            assert nodes[f"/local/domain/0/backend/vbd/{domid}/51712/removable"] == "0"  # unpluggable=false
            assert nodes[f"/xenops/domain/{domid}/device/vif/0/backend"] == f"/local/domain/0/backend/vif/{domid}/0"
            mac = pool.devices("vif", vm)[0]["MAC"]
            assert nodes[f"/xapi/{vm}/private/vif/0/mac"] == mac and nodes[f"/xapi/{vm}/private/vif/0/bridge"] == "xenbr0"
            assert f"{h}/action-request" not in nodes  # removed at the end of the start

            pool.xe("vm-shutdown", "vm=pv1")
            for gone in (h, f"/xenops/domain/{domid}", f"/libxl/{domid}", f"/xapi/{vm}", f"/vm/{vm}/domains/{domid}",
                         f"/local/domain/0/backend/vbd/{domid}", f"/local/domain/0/backend/vif/{domid}"):
                assert not xs.exists(gone), gone
    finally:
        assert pool.stop_everything() == []


def test_a_hot_plugged_disk_gets_its_private_keys_and_loses_them_on_unplug(tmp_path: Path) -> None:
    pool = make_pool(tmp_path / "state", POOL)
    try:
        vm = pool.uuid("vm", "pv1")
        vbd = pool.devices("vbd", vm)[0]["uuid"]
        pool.xe("vm-start", "vm=pv1")
        row = pool.row("vm", vm)
        domid = row["domid"]
        with XsClient(pool.backend(row["resident_on"]).xenstore_socket()) as xs:
            private = f"/xapi/{vm}/private/vbd/51712"
            assert xs.read(f"{private}/backend-kind") == "vbd"
            assert xs.read(f"/local/domain/0/backend/vbd/{domid}/51712/removable") == "1"  # unpluggable by default
            pool.xe("vbd-unplug", f"uuid={vbd}")
            for gone in (private, f"/xapi/{vm}/hotplug/{domid}/vbd/51712", f"/xenops/domain/{domid}/device/vbd/51712",
                         f"/local/domain/{domid}/xenserver/device/vbd/51712"):
                assert not xs.exists(gone), gone
            pool.xe("vbd-plug", f"uuid={vbd}")
            assert xs.read(f"{private}/backend-id") == "0"
            assert xs.read(f"/xenops/domain/{domid}/device/vbd/51712/backend") == f"/local/domain/0/backend/vbd/{domid}/51712"
        pool.xe("vm-shutdown", "vm=pv1", "--force")
    finally:
        assert pool.stop_everything() == []
