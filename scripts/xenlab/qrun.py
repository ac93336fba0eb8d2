#!/usr/bin/env python3
"""Run QEMU, timestamp its console lines into a log, stop on a result or crash pattern.

usage: qrun.py LOG TIMEOUT STOP_REGEX CRASH_REGEX [--phase READY_REGEX SHELL_CMD] -- cmd...
Exit 0 when STOP_REGEX is seen, 3 on CRASH_REGEX, 4 if QEMU ended first, 2 on timeout.
Lines are echoed to stdout as they come when XENLAB_VERBOSE=1.

--phase: once READY_REGEX shows on the console, `bash -c SHELL_CMD` runs on this machine while
the console goes on being logged (the lab's SSH phase: the pool master here, dom0 waiting for
it). Its output goes into the same log, timestamped the same way, lines other than
"XENLAB ..." ones prefixed "master| "; it may also write lines to $XENLAB_CONSOLE (/dev/fd/N of
the same pipe, past pytest's capture of 1 and 2). It is killed if the run ends first.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time


def stop(proc: subprocess.Popen[bytes], grace: float, group: bool = False) -> None:
    if proc.poll() is not None:
        return
    try:
        proc.wait(grace)
        return
    except subprocess.TimeoutExpired:
        pass
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, None)):
        try:
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def main(argv: list[str]) -> int:
    log, timeout = argv[1], float(argv[2])
    stop_re, crash = re.compile(argv[3].encode()), re.compile(argv[4].encode())
    phase_re, phase_cmd = None, ""
    if argv[5] == "--phase":
        phase_re, phase_cmd = re.compile(argv[6].encode()), argv[7]
    cmd = argv[argv.index("--") + 1 :]
    verbose = os.environ.get("XENLAB_VERBOSE") == "1"
    t0 = time.monotonic()
    # stdin is /dev/null: dom0 is not interactive in test mode, and QEMU must not grab the tty
    qemu = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    assert qemu.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(qemu.stdout, selectors.EVENT_READ, "console")
    phase: subprocess.Popen[bytes] | None = None
    bufs = {"console": b"", "master": b""}
    rc, why = 2, "timeout"
    with open(log, "wb") as out:

        def record(line: bytes, source: str) -> None:
            nonlocal rc, why
            line = line.rstrip(b"\r")
            if source == "master" and not line.startswith(b"XENLAB "):
                line = b"master| " + line
            stamped = b"[%7.2f] " % (time.monotonic() - t0) + line + b"\n"
            out.write(stamped)
            if verbose:
                sys.stdout.buffer.write(stamped)
                sys.stdout.flush()
            if source != "console" or rc != 2:
                return
            if crash.search(line):
                rc, why = 3, "crash: " + line.decode(errors="replace")[:120]
            elif stop_re.search(line):
                rc, why = 0, "result line seen"

        def start_phase() -> subprocess.Popen[bytes]:
            r, w = os.pipe()
            proc = subprocess.Popen(["bash", "-c", phase_cmd], stdout=w, stderr=w, stdin=subprocess.DEVNULL,
                                    pass_fds=(w,), env={**os.environ, "XENLAB_CONSOLE": f"/dev/fd/{w}"},
                                    start_new_session=True)
            os.close(w)
            sel.register(os.fdopen(r, "rb", buffering=0), selectors.EVENT_READ, "master")
            out.write(b"[%7.2f] [qrun] started the master's phase (pid %d)\n" % (time.monotonic() - t0, proc.pid))
            return proc

        while rc == 2:
            if time.monotonic() - t0 > timeout:
                break
            for key, _ in sel.select(0.5):
                source = key.data
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    if source == "console":
                        rc, why = 4, "qemu exited"
                    continue
                lines = (bufs[source] + chunk).split(b"\n")
                bufs[source] = lines.pop()
                for line in lines:
                    record(line, source)
                    if source == "console" and phase is None and phase_re is not None and phase_re.search(line):
                        phase = start_phase()
            out.flush()
        out.write(b"[qrun] end after %.2fs: %s\n" % (time.monotonic() - t0, why.encode()))
        if phase is not None and phase.poll() is None:
            out.write(b"[qrun] the master's phase was still running: stopped\n")
            stop(phase, 0, group=True)
    # dom0 powers itself off after the result line; give it a moment, then stop QEMU
    stop(qemu, 5 if rc == 0 else 0.1)
    print(f"[qrun] {why} after {time.monotonic() - t0:.1f}s", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
