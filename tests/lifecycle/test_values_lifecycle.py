"""What an xe user meets around vm-start (issue 13): the seed-era start checks with xapi's
codes and parameters, the record fields a start fills (start-time, memory-actual, ...), JSON
errors that carry the per-host table, and an old pool.db that upgrades."""

from __future__ import annotations

import json
import sqlite3

from conftest import Pool

MiB = 1 << 20


def _raw(pool: Pool, sql: str, *args: object) -> None:
    """Write past xetool's bounds, as an old or hand-edited pool.db may hold."""
    db = sqlite3.connect(pool.state_dir / "pool.db")
    try:
        db.execute(sql, args)
        db.commit()
    finally:
        db.close()


def test_start_checks_raise_xapis_codes(pool: Pool) -> None:
    web = pool.uuid("vm", "web01")
    before = pool.dump()
    _raw(pool, "UPDATE vm SET VCPUs_max = 0, VCPUs_at_startup = 0 WHERE uuid = ?", web)
    assert pool.fails("vm-start", "vm=web01", code="VM_NO_VCPUS") == {"vm": web}
    _raw(pool, "UPDATE vm SET VCPUs_max = 65, VCPUs_at_startup = 1 WHERE uuid = ?", web)
    assert pool.fails("vm-start", "vm=web01", code="VM_TOOMANY_VCPUS") == {"vm": web}
    _raw(pool, "UPDATE vm SET VCPUs_max = 2, VCPUs_at_startup = 2, memory_static_max = 1, memory_dynamic_max = 1,"
               " memory_dynamic_min = 1, memory_static_min = 1 WHERE uuid = ?", web)
    assert pool.fails("vm-start", "vm=web01", code="VM_MEMORY_SIZE_TOO_LOW") == {"vm": web}
    assert pool.vm("web01")["power_state"] == "Halted"
    pool.assert_no_marks()


def test_duplicate_vbd_device_at_start(pool: Pool) -> None:
    web = pool.uuid("vm", "web01")
    vbds = pool.devices("vbd", web)
    second = next(v for v in vbds if v["userdevice"] == "1")
    _raw(pool, "UPDATE vbd SET userdevice = '0' WHERE uuid = ?", second["uuid"])
    params = pool.fails("vm-start", "vm=web01", code="VM_DUPLICATE_VBD_DEVICE")
    assert params == {"vm": web, "vbd": second["uuid"], "device": "xvda"}
    pool.assert_no_marks()


def test_a_vm_at_the_least_memory_starts(pool: Pool) -> None:
    uuid = pool.xe("vm-create", "name-label=tiny", "memory=16MiB", "PV-kernel=/boot/vmlinuz-guest").strip()
    pool.xe("vm-start", f"uuid={uuid}")
    assert pool.row("vm", uuid)["power_state"] == "Running"
    pool.xe("vm-shutdown", f"uuid={uuid}", "--force")


def test_start_fills_the_record_fields(pool: Pool) -> None:
    web = pool.uuid("vm", "web01")
    get = lambda name: pool.xe("vm-param-get", f"uuid={web}", f"param-name={name}").strip()
    assert get("memory-actual") == "0" and get("VCPUs-number") == "0" and get("memory-target") == "0"
    install = get("install-time")
    assert install and get("start-time") == ""
    hosts = set(pool.xe("host-list", "--minimal").strip().split(","))
    possible = set(get("possible-hosts").split("; "))
    assert possible and possible <= hosts

    pool.xe("vm-start", "vm=web01")
    vm = pool.vm("web01")
    assert get("start-time") >= install
    assert int(get("memory-actual")) == int(get("memory-target")) == 512 * MiB
    assert get("VCPUs-number") == "2"
    assert get("possible-hosts") == vm["resident_on"]  # a running VM: where it runs
    record = json.loads(get("last-boot-record"))
    assert record["uuid"] == web and record["memory_static_max"] == 512 * MiB
    host = vm["resident_on"]
    assert web in pool.xe("host-param-get", f"uuid={host}", "param-name=resident-vms")
    assert pool.xe("host-param-get", f"uuid={host}", "param-name=cpu_info", "param-key=cpu_count").strip() == str(
        pool.row("host", host)["cpu_count"])
    listed = pool.xe("vm-param-list", f"uuid={web}")
    for name in ("start-time ( RO)", "install-time ( RO)", "memory-actual ( RO)", "VCPUs-number ( RO)",
                 "memory-target ( RO)", "possible-hosts (SRO)", "last-boot-record ( RO)", "suspend-VDI-uuid ( RO)"):
        assert name in listed, name
    # filters on fields read from the metrics work too
    assert pool.xe("vm-list", "VCPUs-number=2", "--minimal").strip() == web
    data = json.loads(pool.xe("vm-param-list", f"uuid={web}", "--format", "json"))[0]
    assert data["memory-actual"] == 512 * MiB and data["VCPUs-number"] == 2 and data["possible-hosts"] == [host]

    pool.xe("vm-shutdown", "vm=web01", "--force")
    assert get("memory-actual") == "0" and get("memory-target") == "0" and get("VCPUs-number") == "0"


def test_json_param_get_is_typed(pool: Pool) -> None:
    web = pool.uuid("vm", "web01")
    pool.xe("vm-param-set", f"uuid={web}", "other-config:a=1", "other-config:b=x")
    pool.xe("vm-param-add", f"uuid={web}", "param-name=tags", "param-key=t1")
    get = lambda *a: json.loads(pool.xe("vm-param-get", f"uuid={web}", *a, "--format", "json"))
    assert get("param-name=other-config") == {"a": "1", "b": "x"}
    assert get("param-name=other-config", "param-key=a") == "1"
    assert get("param-name=tags") == ["t1"]
    assert get("param-name=VCPUs-max") == 2
    assert get("param-name=ha-always-run") is False
    assert get("param-name=affinity") is None
    assert get("param-name=name-label") == "web01"
    assert get("param-name=power-state") == "halted"
    assert isinstance(get("param-name=VBDs"), list) and len(get("param-name=VBDs")) == 2


def test_json_errors_carry_their_parameters(pool: Pool) -> None:
    web = pool.uuid("vm", "web01")
    pool.xe("vm-param-add", f"uuid={web}", "param-name=other-config", "owner=ops")
    r = pool.run("vm-param-add", f"uuid={web}", "param-name=other-config", "owner=x", "--format", "json")
    assert r.returncode == 1 and r.stdout == ""
    err = json.loads(r.stderr)["error"]
    assert err["code"] == "MAP_DUPLICATE_KEY" and err["params"] == ["vm", "other-config", web, "owner"]
    assert err["message"].startswith("You tried to add a key-value pair")
    assert err["fields"] == {"type": "vm", "param_name": "other-config", "uuid": web, "key": "owner"}


def test_json_no_hosts_available_puts_the_table_in_the_error(pool: Pool) -> None:
    web = pool.uuid("vm", "web01")
    pool.xe("host-disable", "--multiple")
    r = pool.run("vm-start", "vm=web01", "--format", "json")
    assert r.returncode == 1 and r.stdout == ""
    doc = json.loads(r.stderr)  # stderr is one JSON document: no text table beside it
    err = doc["error"]
    assert err["code"] == "NO_HOSTS_AVAILABLE" and err["params"] == [] and err["vm"] == web
    hosts = err["placement"]["hosts"]
    assert len(hosts) == 3 and not any(h["ok"] for h in hosts)
    assert all(any(c["check"] and not c["passed"] and c["reason"] for c in h["checks"]) for h in hosts)
    text = pool.run("vm-start", "vm=web01")  # without json, xe's table stays on stderr
    assert "There are no suitable hosts to start this VM on." in text.stderr
    pool.xe("host-enable", "--multiple")
    assert pool.vm("web01")["power_state"] == "Halted"
    pool.assert_no_marks()


def test_an_old_pool_db_upgrades(pool: Pool) -> None:
    """A schema-1 pool.db (no cpu_info, no memory_target) is migrated on first use."""
    pool.xe("vm-start", "vm=web01")
    web = pool.uuid("vm", "web01")
    db = sqlite3.connect(pool.state_dir / "pool.db")
    try:
        db.execute("ALTER TABLE host DROP COLUMN cpu_info")
        db.execute("ALTER TABLE vm DROP COLUMN memory_target")
        db.execute("DELETE FROM meta")
        db.execute("DROP TABLE host_load")  # schema 2's, kept by triggers: rebuilt from the VMs
        for trigger in ("insert", "update", "delete"):
            db.execute(f"DROP TRIGGER host_load_{trigger}")
        db.execute("PRAGMA user_version = 1")
        db.commit()
    finally:
        db.close()
    host = pool.vm("web01")["resident_on"]
    assert pool.xe("host-param-get", f"uuid={host}", "param-name=cpu_info", "param-key=cpu_count").strip() != ""
    assert pool.xe("vm-param-get", f"uuid={web}", "param-name=memory-target").strip() == str(512 * MiB)
    db = sqlite3.connect(pool.state_dir / "pool.db")
    try:
        from xetool.store import schema

        assert db.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
        n, dmin = db.execute("SELECT n, dynamic_min FROM host_load WHERE host = ?", (host,)).fetchone()
        assert (n, dmin) == db.execute("SELECT COUNT(*), SUM(memory_dynamic_min) FROM vm WHERE resident_on = ?",
                                       (host,)).fetchone()
    finally:
        db.close()
    pool.xe("vm-shutdown", "vm=web01", "--force")
