"""xetool.xenstore.client: what it adds to pyxs, against a real server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from xetool.errors import XeError
from xetool.xenstore.client import XenstoreError, XsClient
from xetool.xenstore.server import ThreadedServer


def test_str_values_empty_values_and_listing(sock_path: str) -> None:
    with XsClient(sock_path) as xs:
        xs.write("/d/empty", "")
        xs.write("/d/text", "héllo")
        assert xs.read("/d/empty") == ""
        assert xs.read("/d/text") == "héllo"
        assert xs.ls("/d") == ["empty", "text"]
        assert xs.exists("/d") and not xs.exists("/d/none")
        assert xs.read_or("/d/none") is None
        xs.mkdir("/d/dir")
        xs.set_perms("/d/dir", ["n0", "r3"])
        assert xs.get_perms("/d/dir") == ["n0", "r3"]
        xs.rm("/d")
        assert not xs.exists("/d")


def test_errors_are_registry_errors(sock_path: str) -> None:
    with XsClient(sock_path) as xs:
        with pytest.raises(XenstoreError) as e:
            xs.read("/missing")
        assert e.value.code == "XENSTORE_ERROR" and e.value.errname == "ENOENT"
        assert e.value.params == {"operation": "read", "path": "/missing", "error": "ENOENT"}
        with pytest.raises(XenstoreError) as e:
            xs.write("/bad path", "x")
        assert e.value.errname == "EINVAL"
        with pytest.raises(XenstoreError) as e:
            xs.write("/big", "x" * 5000)
        assert e.value.errname == "E2BIG"


def test_write_many_and_transaction_retry_under_random_eagain(sock_path: str) -> None:
    with XsClient(sock_path) as xs:
        xs.control("eagain", "0.5")
        xs.write_many({"/t/a": "1", "/t/b": ""}, perms={"/t/a": ["n0", "r9"]})
        assert xs.read("/t/a") == "1" and xs.read("/t/b") == ""
        calls = []

        def incr(t) -> int:
            calls.append(1)
            v = int(t.read_or("/t/n", "0") or "0") + 1
            t.write("/t/n", str(v))
            return v

        for _ in range(10):
            xs.transaction(incr)
        assert xs.read("/t/n") == "10"
        assert len(calls) > 10  # some attempts were redone
        xs.control("eagain", "0")


def test_concurrent_increments_are_not_lost(sock_path: str) -> None:
    def worker() -> None:
        with XsClient(sock_path) as xs:
            for _ in range(25):
                xs.transaction(lambda t: t.write("/ctr", str(int(t.read_or("/ctr", "0") or "0") + 1)))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    with XsClient(sock_path) as xs:
        assert xs.read("/ctr") == "100"


def test_exception_aborts_the_transaction(sock_path: str) -> None:
    with XsClient(sock_path) as xs:
        def fail(t) -> None:
            t.write("/aborted", "1")
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            xs.transaction(fail)
        assert not xs.exists("/aborted")


def test_watches_have_unique_tokens_and_wait_for_value(sock_path: str) -> None:
    with XsClient(sock_path) as xs, XsClient(sock_path) as writer:
        w1, w2 = xs.watch("/s"), xs.watch("/s")
        assert w1.token != w2.token
        assert w1.get(1) == "/s" and w2.get(1) == "/s"
        w2.close()
        threading.Timer(0.1, lambda: writer.write("/s/state", "4")).start()
        t0 = time.monotonic()
        assert xs.wait_for_value("/s/state", "4", timeout=3) == "4"
        assert time.monotonic() - t0 < 1
        assert w1.get(1) == "/s/state"
        w1.close()
        with pytest.raises(XeError) as e:
            xs.wait_for_value("/s/state", "5", timeout=0.3)
        assert e.value.code == "EVENT_WAIT_TIMEOUT"
        threading.Timer(0.1, lambda: writer.rm("/s/state")).start()
        xs.wait_for_absence("/s/state", timeout=3)


def test_closed_client_is_never_reused(sock_path: str) -> None:
    xs = XsClient(sock_path)
    xs.write("/x", "1")
    xs.close()
    with pytest.raises(XeError) as e:
        xs.read("/x")
    assert e.value.code == "XENSTORE_UNREACHABLE"
    with XsClient(sock_path) as fresh:
        assert fresh.read("/x") == "1"


def test_no_server(short_dir: Path) -> None:
    t0 = time.monotonic()
    with pytest.raises(XeError) as e:
        XsClient(str(short_dir / "none.sock")).read("/")
    assert e.value.code == "XENSTORE_UNREACHABLE"
    assert time.monotonic() - t0 < 0.5


def _server_process(path: Path) -> subprocess.Popen[bytes]:
    p = subprocess.Popen([sys.executable, "-m", "xetool.xenstore.server", "--socket", str(path)],
                         stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not path.exists():
        assert time.monotonic() < deadline and p.poll() is None
        time.sleep(0.01)
    return p


def test_server_dies_during_a_wait(short_dir: Path) -> None:
    """The server goes away while a call or a watch waits: UNREACHABLE at once, no hang."""
    p = _server_process(short_dir / "s.sock")
    try:
        with XsClient(str(short_dir / "s.sock"), timeout=30) as xs:
            xs.write("/a", "1")
            threading.Timer(0.2, p.kill).start()
            t0 = time.monotonic()
            with pytest.raises(XeError) as e:
                xs.wait_for_value("/a", "never", timeout=30)
            assert e.value.code == "XENSTORE_UNREACHABLE"
            assert time.monotonic() - t0 < 2
            with pytest.raises(XeError) as e:
                xs.read("/a")
            assert e.value.code == "XENSTORE_UNREACHABLE"
    finally:
        p.kill()
        p.wait()


def test_silent_server_times_out(short_dir: Path) -> None:
    p = _server_process(short_dir / "s.sock")
    try:
        with XsClient(str(short_dir / "s.sock"), timeout=0.5) as xs:
            xs.write("/a", "1")
            os.kill(p.pid, signal.SIGSTOP)
            t0 = time.monotonic()
            with pytest.raises(XeError) as e:
                xs.read("/a")
            assert e.value.code == "XENSTORE_TIMEOUT"
            assert 0.4 < time.monotonic() - t0 < 2
    finally:
        os.kill(p.pid, signal.SIGCONT)
        p.kill()
        p.wait()


def test_domain_messages(sock_path: str, server: ThreadedServer) -> None:
    with XsClient(sock_path) as xs:
        assert xs.get_domain_path(4) == "/local/domain/4"
        with xs.watch("@introduceDomain") as w:
            assert w.get(1) == "@introduceDomain"
            xs.introduce_domain(4, 100, 2)
            assert w.get(1) == "@introduceDomain"
        assert xs.is_domain_introduced(4)
        xs.resume_domain(4)
        xs.release_domain(4)
        assert not xs.is_domain_introduced(4)
