"""WLB against a real recommender process and a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest
from placement_factory import host, vm

from xetool.errors import XeError
from xetool.placement.choose import FirstChoice
from xetool.placement.snapshot import PoolView, WlbConfig
from xetool.placement.wlb import choose_host_with_wlb, parse_answer, retrieve_wlb_recommendations, wlb_request

RECOMMENDER = r'''
import json, sys, time
mode = sys.argv[1]
req = json.load(sys.stdin)
if len(sys.argv) > 2:
    open(sys.argv[2], "w").write(json.dumps(req))
if mode == "ranked":
    # prefer the host with the LEAST free memory (packing), the opposite of the default
    hosts = sorted(req["pool"]["hosts"], key=lambda h: h["memory_free"])
    print(json.dumps({"recommendations": [
        {"host": h["uuid"], "score": 100.0 - i, "reason": "pack"} for i, h in enumerate(hosts)]}))
elif mode == "sleep":
    time.sleep(30)
elif mode == "garbage":
    print("this is not json")
elif mode == "fail":
    sys.stderr.write("database unavailable\n")
    sys.exit(3)
'''


def pool_with(wlb: WlbConfig | None = None) -> PoolView:
    hosts = [host("roomy", mib=16384), host("tight", mib=4096), host("down", mib=65536, live=False)]
    return PoolView.build(hosts, [vm("g", mib=1024, resident_on="tight")], wlb=wlb)


@pytest.fixture
def script(tmp_path: Path) -> Path:
    p = tmp_path / "recommender.py"
    p.write_text(RECOMMENDER)
    return p


def command(script: Path, mode: str, *extra: str, timeout: float = 10.0) -> WlbConfig:
    return WlbConfig(command=(sys.executable, str(script), mode, *extra), timeout=timeout)


def test_default_chooser_when_no_wlb() -> None:
    got = choose_host_with_wlb(vm(), pool_with(), FirstChoice())
    assert got.placement.host.uuid == "roomy" and got.warning is None


def test_command_recommender_wins_and_sees_the_snapshot(script: Path, tmp_path: Path) -> None:
    seen = tmp_path / "request.json"
    got = choose_host_with_wlb(vm(), pool_with(command(script, "ranked", str(seen))), FirstChoice())
    assert got.warning is None
    assert got.placement.host.uuid == "tight" and got.placement.category == "wlb"
    request = json.loads(seen.read_text())
    assert request["vm"]["uuid"] == "vm" and request["vm"]["memory"]["start"] == 1035 * 2**20
    assert {h["uuid"] for h in request["pool"]["hosts"]} == {"roomy", "tight", "down"}
    # the dead host was recommended first but is re-checked and marked impossible
    down = [r for r in got.recommendations if r.host == "down"][0]
    assert down.impossible and down.reason == "Host down"


@pytest.mark.parametrize("mode, code", [("garbage", "WLB_INTERNAL_ERROR"), ("fail", "WLB_INTERNAL_ERROR")])
def test_broken_command_falls_back_with_a_warning(script: Path, mode: str, code: str) -> None:
    got = choose_host_with_wlb(vm(), pool_with(command(script, mode)), FirstChoice())
    assert got.placement.host.uuid == "roomy" and got.placement.category != "wlb"
    assert got.warning is not None and got.warning.error.code == code
    assert got.warning.name == "WLB_CONSULTATION_FAILED"
    if mode == "fail":
        assert "status 3: database unavailable" in got.warning.error.params["reason"]


def test_slow_command_times_out_and_is_killed(script: Path) -> None:
    t0 = time.monotonic()
    got = choose_host_with_wlb(vm(), pool_with(command(script, "sleep", timeout=0.5)), FirstChoice())
    assert time.monotonic() - t0 < 5
    assert got.warning is not None and got.warning.error.code == "WLB_TIMEOUT"
    assert got.warning.error.params == {"timeout": "0.5"}
    assert got.placement.host.uuid == "roomy"


def test_missing_command_is_an_internal_error(tmp_path: Path) -> None:
    cfg = WlbConfig(command=(str(tmp_path / "nope"),))
    with pytest.raises(XeError) as ei:
        retrieve_wlb_recommendations(vm(), pool_with(cfg))
    assert ei.value.code == "WLB_INTERNAL_ERROR" and "cannot run" in ei.value.params["reason"]


class Handler(BaseHTTPRequestHandler):
    mode = "ranked"
    requests: list = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Handler.requests.append(body)
        if self.mode == "sleep":
            time.sleep(3)
        if self.mode == "error500":
            self.send_error(500, "boom")
            return
        if self.mode == "garbage":
            answer = b"<html>nope</html>"
        else:
            recs = [{"host": "tight", "score": 0.9, "reason": None},
                    {"host": "roomy", "score": 0.5, "reason": "spread"},
                    {"host": "ghost", "score": 5.0}]
            answer = json.dumps({"recommendations": recs}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the client gave up on a slow answer (the timeout test): expected


@pytest.fixture
def server() -> Iterator[str]:
    srv = QuietServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    Handler.requests = []
    yield f"http://127.0.0.1:{srv.server_address[1]}/recommend"
    srv.shutdown()
    srv.server_close()
    Handler.mode = "ranked"


def test_http_recommender(server: str) -> None:
    Handler.mode = "ranked"
    pool = pool_with(WlbConfig(url=server, timeout=5))
    recs = retrieve_wlb_recommendations(vm(), pool)
    assert [(r.host, r.impossible) for r in recs] == [("tight", False), ("roomy", False), ("ghost", True)]
    assert recs[-1].reason == "Unknown host"
    got = choose_host_with_wlb(vm(), pool, FirstChoice())
    assert got.placement.host.uuid == "tight" and got.warning is None
    assert Handler.requests[0]["request"] == "vm-start"


@pytest.mark.parametrize("mode, code", [("sleep", "WLB_TIMEOUT"), ("garbage", "WLB_INTERNAL_ERROR"),
                                        ("error500", "WLB_INTERNAL_ERROR")])
def test_http_failures_fall_back(server: str, mode: str, code: str) -> None:
    Handler.mode = mode
    got = choose_host_with_wlb(vm(), pool_with(WlbConfig(url=server, timeout=0.5)), FirstChoice())
    assert got.warning is not None and got.warning.error.code == code
    assert got.placement.host.uuid == "roomy"


def test_unreachable_url_falls_back() -> None:
    got = choose_host_with_wlb(vm(), pool_with(WlbConfig(url="http://127.0.0.1:9/", timeout=1)), FirstChoice())
    assert got.warning is not None and got.warning.error.code == "WLB_INTERNAL_ERROR"


def test_no_valid_recommendation_falls_back() -> None:
    # the only host the recommender names cannot take the VM
    cfg = WlbConfig(command=(sys.executable, "-c",
                             'import json,sys; json.load(sys.stdin); '
                             'print(json.dumps({"recommendations": [{"host": "down", "score": 1}]}))'))
    got = choose_host_with_wlb(vm(), pool_with(cfg), FirstChoice())
    assert got.placement.host.uuid == "roomy"
    assert got.warning is not None and "no recommended host" in got.warning.error.params["reason"]
    assert got.recommendations[0].impossible


@pytest.mark.parametrize("raw, fragment", [
    (b'{"recommendations": "x"}', "no 'recommendations' list"),
    (b'{"recommendations": [{"score": 1}]}', "no 'host' string"),
    (b'{"recommendations": [{"host": "a", "score": true}]}', "numeric 'score'"),
    (b'{"recommendations": [{"host": "a", "score": NaN}]}', "numeric 'score'"),
    (b'{"recommendations": [{"host": "a", "score": 1, "reason": 3}]}', "'reason'"),
    (b'{"error": "maintenance"}', "declined: maintenance"),
    (b'\xff\xfe', "not JSON"),
])
def test_garbage_answers_are_named(raw: bytes, fragment: str) -> None:
    with pytest.raises(XeError) as ei:
        parse_answer(raw)
    assert ei.value.code == "WLB_INTERNAL_ERROR" and fragment in ei.value.params["reason"]


def test_invalid_vm_is_refused_before_asking() -> None:
    with pytest.raises(XeError) as ei:
        choose_host_with_wlb(vm(vcpus_max=0, vcpus_at_startup=0), pool_with(WlbConfig(url="http://127.0.0.1:9/")))
    assert ei.value.code == "VM_NO_VCPUS"


def test_request_is_plain_json() -> None:
    json.dumps(wlb_request(vm(required_srs=("sr",)), pool_with()))
