"""The guest installer network's hosts file: addresses, idempotence, and who is told of changes."""

from __future__ import annotations

import os
import subprocess

from xetool.devices import vif


def test_addresses_from_ten_up_idempotent_per_mac(tmp_path):
    a = vif.add_lease(tmp_path, "xenbr1", "00:16:3e:00:00:01", "a")
    b = vif.add_lease(tmp_path, "xenbr1", "00:16:3e:00:00:02", "b")
    assert (a, b) == ("192.168.128.10", "192.168.128.11")
    assert vif.add_lease(tmp_path, "xenbr1", "00:16:3e:00:00:01", "a") == a
    assert vif.remove_lease(tmp_path, "xenbr1", "00:16:3e:00:00:01") is True
    assert vif.remove_lease(tmp_path, "xenbr1", "00:16:3e:00:00:01") is False
    assert vif.add_lease(tmp_path, "xenbr1", "00:16:3e:00:00:03", "c") == a  # the freed address again
    assert vif.leases_file(tmp_path, "xenbr1").read_text() == \
        "00:16:3e:00:00:02,192.168.128.11,b\n00:16:3e:00:00:03,192.168.128.10,c\n"


def test_a_stale_pid_file_signals_nobody(tmp_path):
    """SIGHUP would end most processes: only a process named dnsmasq gets it."""
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        pid_file = vif.dnsmasq_pid_file(tmp_path, "xenbr1")
        pid_file.parent.mkdir(parents=True)
        for pid in (sleeper.pid, os.getpid(), 2 ** 22 + 1):  # another program, ourselves, nobody
            pid_file.write_text(f"{pid}\n")
            assert vif.reload_dnsmasq(tmp_path, "xenbr1") is False
        vif.add_lease(tmp_path, "xenbr1", "00:16:3e:00:00:01", "a")  # tells nobody either
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()
