#!/usr/bin/env python3
"""Benchmark of xetool's xenstore server driven by pyxs: `python3 bench/xenstore_bench.py`.

1. floor: the same 4 pyxs client processes against a trivial echo server on a Unix socket
   (what pyxs and a minimal Python server cost, with no xenstore work at all);
2. load: 4 pyxs client processes doing mixed reads and writes against the server, while a
   fifth process measures watch-event latency (write on one connection, event on another).
Prints ops/s for both, their ratio, and the latency percentiles.
Targets (issue 3): >= 10,000 ops/s in total, watch events p99 <= 5 ms.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CLIENTS = 4


def echo_server(path: str) -> None:
    """The trivial server: parses the 16-byte headers and answers each request at once
    (WRITE with OK, anything else with a fixed value) with no store behind it."""
    import struct

    hdr = struct.Struct("=IIII")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    bufs: dict[socket.socket, bytes] = {}
    while True:
        for key, _ in sel.select():
            if key.fileobj is listener:
                conn, _ = listener.accept()
                sel.register(conn, selectors.EVENT_READ)
                bufs[conn] = b""
                continue
            conn = key.fileobj  # type: ignore[assignment]
            data = conn.recv(65536)
            if not data:
                sel.unregister(conn)
                conn.close()
                continue
            buf = bufs[conn] + data
            out = []
            while len(buf) >= 16:
                op, rq, tx, n = hdr.unpack_from(buf)
                if len(buf) < 16 + n:
                    break
                buf = buf[16 + n:]
                payload = b"OK\0" if op == 11 else b"value"
                out.append(hdr.pack(op, rq, tx, len(payload)) + payload)
            bufs[conn] = buf
            if out:
                conn.sendall(b"".join(out))


def client_loop(path: str, index: int, start_at: float, stop_at: float, out: mp.Queue) -> None:
    import pyxs

    with pyxs.Client(unix_socket_path=path) as c:
        keys = [f"/bench/c{index}/k{i}".encode() for i in range(64)]
        for k in keys:
            c.write(k, b"0")
        while time.time() < start_at:
            time.sleep(0.001)
        n = 0
        while True:
            k = keys[n & 63]
            c.write(k, b"value-%d" % n)
            c.read(k)
            c.read(keys[(n + 7) & 63])
            n += 3
            if n % 96 == 0 and time.time() >= stop_at:
                break
    out.put(n)


def latency_probe(path: str, start_at: float, stop_at: float, out: mp.Queue) -> None:
    import pyxs

    with pyxs.Client(unix_socket_path=path) as writer, pyxs.Client(unix_socket_path=path) as watcher:
        m = watcher.monitor()
        token = b"probe-%d" % os.getpid()
        m.watch(b"/probe", token)
        m.events.get(timeout=5)  # the initial event
        while time.time() < start_at:
            time.sleep(0.001)
        samples = []
        i = 0
        while time.time() < stop_at:
            i += 1
            t0 = time.perf_counter()
            writer.write(b"/probe/v", b"%d" % i)
            m.events.get(timeout=5)
            samples.append(time.perf_counter() - t0)
            time.sleep(0.005)
    out.put(samples)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_load(path: str, seconds: float, with_probe: bool) -> tuple[float, list[float]]:
    ctx = mp.get_context("fork")
    out: mp.Queue = ctx.Queue()
    start_at = time.time() + 1.0  # time for every process to connect first
    stop_at = start_at + seconds
    procs = [ctx.Process(target=client_loop, args=(path, i, start_at, stop_at, out)) for i in range(CLIENTS)]
    lat_q: mp.Queue = ctx.Queue()
    if with_probe:
        procs.append(ctx.Process(target=latency_probe, args=(path, start_at, stop_at, lat_q)))
    for p in procs:
        p.start()
    counts = [out.get(timeout=seconds + 30) for _ in range(CLIENTS)]
    samples = lat_q.get(timeout=seconds + 30) if with_probe else []
    for p in procs:
        p.join(10)
    return sum(counts) / seconds, samples


def wait_for_socket(path: Path, proc: subprocess.Popen[bytes] | mp.Process) -> None:
    deadline = time.monotonic() + 10
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"no server socket at {path}")
        time.sleep(0.01)


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="xsbench-", dir="/tmp"))
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    floors: list[float] = []
    rates: list[float] = []
    samples: list[float] = []
    floor_cpu: list[float] = []  # server-side CPU microseconds per operation
    server_cpu: list[float] = []
    try:
        # Alternate floor and server rounds: on a shared machine the load drifts, and a ratio
        # is only meaningful between measurements taken close together.
        for r in range(args.rounds):
            echo_path = tmp / f"echo{r}.sock"
            echo = mp.get_context("fork").Process(target=echo_server, args=(str(echo_path),), daemon=True)
            echo.start()
            wait_for_socket(echo_path, echo)
            cpu0 = cpu_seconds(echo.pid or 0)
            floor, _ = run_load(str(echo_path), args.seconds, with_probe=False)
            floor_cpu.append((cpu_seconds(echo.pid or 0) - cpu0) / (floor * args.seconds) * 1e6)
            echo.terminate()
            echo.join(5)

            xs_path = tmp / f"xenstored{r}.sock"
            server = subprocess.Popen([sys.executable, "-m", "xetool.xenstore.server", "--socket", str(xs_path)],
                                      env=env, stderr=subprocess.DEVNULL)
            try:
                wait_for_socket(xs_path, server)
                cpu0 = cpu_seconds(server.pid)
                rate, lat = run_load(str(xs_path), args.seconds, with_probe=True)
                server_cpu.append((cpu_seconds(server.pid) - cpu0) / (rate * args.seconds) * 1e6)
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait(10)
            floors.append(floor)
            rates.append(rate)
            samples += lat
            print(f"round {r + 1}: floor {floor:9,.0f} ops/s ({floor_cpu[-1]:5.1f} us CPU/op)   "
                  f"server {rate:9,.0f} ops/s ({server_cpu[-1]:5.1f} us CPU/op)   ratio {rate / floor:.2f}")

        load = os.getloadavg()
        rate = statistics.median(rates)
        floor = statistics.median(floors)
        print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
              f"(other work on the machine lowers both figures)")
        print(f"floor  (pyxs x{CLIENTS} -> trivial server, no store), median: {floor:10,.0f} ops/s")
        print(f"server (pyxs x{CLIENTS} -> xetool xenstored, 1/3 writes), median: {rate:10,.0f} ops/s"
              f"   target >= 10,000   {'OK' if rate >= 10000 else 'BELOW TARGET'}")
        print(f"ratio server/floor (median of rounds): {statistics.median(r / f for r, f in zip(rates, floors)):.2f}")
        print(f"server-side CPU per operation (median; less sensitive to other load): trivial server "
              f"{statistics.median(floor_cpu):.1f} us, xetool xenstored {statistics.median(server_cpu):.1f} us "
              f"-> one core could serve about {1e6 / statistics.median(server_cpu):,.0f} ops/s")
        if samples:
            p50, p99 = pct(samples, 0.50), pct(samples, 0.99)
            print(f"watch latency under load: {len(samples)} samples, p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
                  f"max {max(samples) * 1000:.2f} ms, mean {statistics.mean(samples) * 1000:.2f} ms"
                  f"   target p99 <= 5 ms   {'OK' if p99 <= 5 else 'ABOVE TARGET'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
