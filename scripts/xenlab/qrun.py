#!/usr/bin/env python3
"""Run QEMU, timestamp its console lines into a log, stop on a result or crash pattern.

usage: qrun.py LOG TIMEOUT STOP_REGEX CRASH_REGEX -- cmd...
Exit 0 when STOP_REGEX is seen, 3 on CRASH_REGEX, 4 if QEMU ended first, 2 on timeout.
Lines are echoed to stdout as they come when XENLAB_VERBOSE=1.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    log, timeout = argv[1], float(argv[2])
    stop, crash = re.compile(argv[3].encode()), re.compile(argv[4].encode())
    cmd = argv[argv.index("--") + 1 :]
    verbose = os.environ.get("XENLAB_VERBOSE") == "1"
    t0 = time.monotonic()
    # stdin is /dev/null: dom0 is not interactive in test mode, and QEMU must not grab the tty
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    buf, rc, why = b"", 2, "timeout"
    with open(log, "wb") as out:
        while rc == 2:
            elapsed = time.monotonic() - t0
            if elapsed > timeout:
                break
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                time.sleep(0.05)
                continue
            if not chunk:
                rc, why = 4, "qemu exited"
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                line = line.rstrip(b"\r")
                stamped = b"[%7.2f] " % elapsed + line + b"\n"
                out.write(stamped)
                if verbose:
                    sys.stdout.buffer.write(stamped)
                    sys.stdout.flush()
                if crash.search(line):
                    rc, why = 3, "crash: " + line.decode(errors="replace")[:120]
                elif stop.search(line) and rc == 2:
                    rc, why = 0, "result line seen"
            out.flush()
        out.write(b"[qrun] end after %.2fs: %s\n" % (time.monotonic() - t0, why.encode()))
    if proc.poll() is None:
        # dom0 powers itself off after the result line; give it a moment, then stop QEMU
        try:
            proc.wait(5 if rc == 0 else 0.1)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    print(f"[qrun] {why} after {time.monotonic() - t0:.1f}s", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
