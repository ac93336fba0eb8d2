"""The lane over SSH: the pool master on this machine, the lab's dom0 a host reached over SSH,
where `xetool host-agent` (the lab's /usr/local/bin/xetool: the checkout over 9p) serves it."""

from __future__ import annotations

import json
import subprocess
import time

from tests.xen.lab import emit
from tests.xen_remote.remote import Dom0


def test_agent_greets_over_ssh(dom0: Dom0) -> None:
    """sshd takes the run's key and knows no other; `xetool host-agent` greets first."""
    from xetool.host.calls import PROTOCOL

    t = time.monotonic()
    dom0.sh("true", shared=False)
    fresh = time.monotonic() - t
    dom0.sh("true")  # opens the shared connection
    t = time.monotonic()
    dom0.sh("true")
    reused = time.monotonic() - t
    t = time.monotonic()
    res = dom0.sh("xetool host-agent", stdin="")  # input closed at once: greet, then exit
    hello = time.monotonic() - t
    first = res.stdout.splitlines()[0] if res.stdout else ""
    greeting = json.loads(first)["hello"]
    assert greeting["protocol"] == PROTOCOL, greeting
    emit(f"XENLAB TIME ssh into dom0: a new connection {fresh:.2f}s, over the shared one {reused:.2f}s; "
         f"`xetool host-agent` to its hello and exit {hello:.2f}s")
    # no password, no other key: a client without the run's key is refused
    refused = subprocess.run(["ssh", "-p", str(dom0.port), "-l", dom0.user, *dom0.options(),
                              "-o", "IdentitiesOnly=yes", "-o", "IdentityFile=/dev/null", "-o", "ControlPath=none",
                              dom0.host, "true"], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert refused.returncode == 255 and "Permission denied" in refused.stderr, refused.stderr
