"""A large generated pool in a real store, for the benchmarks that must pay what a user pays:
a real `pool.db` read by a real command (bench/vm_start_bench.py) or by the master's own
snapshot code (bench/placement_bench.py)."""

from __future__ import annotations

from pathlib import Path

from start_storm import env_for, xe


def wall_ok(env: dict[str, str], *args: str) -> None:
    out = xe(env, *args)
    if out.returncode:
        raise SystemExit(f"xetool {' '.join(args)}: {out.stderr}")


def generated_store(state: Path, hosts: int, vms: int) -> None:
    """A store of `hosts` hosts and `vms` VMs resident on them, written directly (an import of
    that size would be a benchmark of its own)."""
    import random

    from xetool.store.db import Store

    toml = state.parent / "small.toml"
    toml.write_text('[pool]\nname-label = "big"\nmaster = "h0"\n[[host]]\nname-label = "h0"\nmemory = "256GiB"\n'
                    'dom0-memory = "4GiB"\ncpus = 32\ncapabilities = ["pv", "hvm"]\n[[sr]]\nname-label = "shared"\n'
                    'type = "file"\nshared = true\n[[network]]\nname-label = "lan"\nbridge = "xenbr0"\n'
                    '[[vm]]\nname-label = "probe"\nmemory = "2GiB"\nvcpus = 2\nPV-kernel = "/boot/vmlinuz"\n'
                    '  [[vm.disk]]\n  device = 0\n  size = "1GiB"\n  sr = "shared"\n  [[vm.vif]]\n  device = 0\n  network = "lan"\n')
    wall_ok(env_for(state), "pool-import", f"file={toml}")
    rng = random.Random(1)
    store = Store(state)
    with store.write() as txn:
        h0 = txn.select("host", None)[0]
        sr = txn.select("sr", ["uuid"])[0]["uuid"]
        net = txn.select("network", ["uuid"])[0]["uuid"]
        template = {k: h0[k] for k in ("memory_overhead", "dom0_memory", "cpu_count", "capabilities", "enabled", "live", "backend")}
        ids = [h0["uuid"]]
        for i in range(1, hosts):
            u = txn.insert("host", {**template, "name_label": f"h{i}", "current_operations": {}, "memory_total": rng.choice((256, 384, 512)) << 30})
            ids.append(u)
            txn.insert("pbd", {"host": u, "SR": sr, "currently_attached": True, "device_config": {}})
            txn.insert("pif", {"host": u, "network": net})
        for j in range(vms):
            gib = rng.choice((1, 2, 4, 8))
            txn.insert("vm", {"name_label": f"vm{j}", "power_state": "Running", "resident_on": rng.choice(ids),
                              "memory_static_max": gib << 30, "memory_dynamic_max": gib << 30,
                              "memory_dynamic_min": gib << 30, "memory_static_min": gib << 29,
                              "memory_overhead": 20 << 20, "VCPUs_max": 2, "VCPUs_at_startup": 2, "domid": 1000 + j})
    store.close()


