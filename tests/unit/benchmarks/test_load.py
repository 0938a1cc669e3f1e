"""The pure parts of the load benchmark: percentiles, ratios, workloads, ports, the load client
against a real loopback server, and the JSON -> markdown renderer."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks import load
from benchmarks._http import (
    ServerProcess,
    check_loopback,
    free_port,
    median,
    percentile,
    ratio,
    run_raw_clients,
)


# ------------------------------------------------------------ statistics
@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=60), st.floats(min_value=0, max_value=100))
def test_percentile_agrees_with_numpy(values: list[float], q: float) -> None:
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-9, abs=1e-9)


def test_percentile_edges() -> None:
    assert percentile([5.0], 99) == 5.0
    assert median([1.0, 3.0, 2.0, 10.0]) == 2.5
    assert np.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_ratio_is_above_one_when_ours_is_better() -> None:
    assert ratio(200.0, 100.0) == 2.0  # throughput: ours twice the peer's
    assert ratio(10.0, 40.0, higher_is_better=False) == 4.0  # latency: ours a quarter of the peer's
    assert ratio(None, 1.0) is None and ratio(1.0, 0.0) is None and ratio(float("nan"), 1.0) is None
    assert ratio(0.0, 5.0, higher_is_better=False) is None and ratio(5.0, 0.0, higher_is_better=False) is None


def test_ratio_row_and_median_summary() -> None:
    rounds = [
        {"req_per_s": 10.0, "items_per_s": 10.0, "p50_ms": 5.0, "p95_ms": 9.0, "p99_ms": 12.0, "errors": 0,
         "timeouts": 1, "shed": 2, "loadavg": [1.5, 1.0, 0.5]},
        {"req_per_s": 30.0, "items_per_s": 30.0, "p50_ms": 3.0, "p95_ms": 7.0, "p99_ms": None, "errors": 1,
         "timeouts": 0, "shed": 0, "loadavg": [3.0, 1.0, 0.5]},
        {"req_per_s": 20.0, "items_per_s": 20.0, "p50_ms": 4.0, "p95_ms": 8.0, "p99_ms": 10.0, "errors": 0,
         "timeouts": 0, "shed": 4, "loadavg": [2.0, 1.0, 0.5]},
    ]  # fmt: skip
    m = load.median_summary(rounds)
    assert m["items_per_s"] == 20.0 and m["p50_ms"] == 4.0
    assert m["p99_ms"] == 11.0  # the round without a p99 is left out
    assert (m["errors_total"], m["timeouts_total"], m["shed_total"]) == (1, 1, 6)
    assert m["loadavg_1m"] == [1.5, 3.0]
    peer = {"items_per_s": 10.0, "p50_ms": 8.0, "p95_ms": 8.0, "p99_ms": 44.0}
    r = load.ratio_row(m, peer)
    assert r == {"throughput": 2.0, "p50": 2.0, "p95": 1.0, "p99": 4.0}


# ------------------------------------------------------------- workloads
@pytest.mark.parametrize("quick", [True, False])
def test_plan_has_the_issue_workloads(quick: bool) -> None:
    plan = load.make_plan(quick)
    assert [(w.texts, w.clients, w.items) for w in plan.embed] == [
        (t, c, i) for t in ("long", "short") for c, i in ((1, 1), (32, 1), (4, 32))
    ]
    assert [w.clients for w in plan.recommend] == [1, 20, 100]
    assert (plan.giveup.clients, plan.giveup.items, plan.giveup.client_timeout_s) == (200, 32, 5.0)
    for w in plan.embed:
        assert w.requests >= w.clients  # every client sends at least one request
        assert 0 < w.deadline_s <= 60  # bounded in time
    assert len({w.name for w in plan.embed}) == len(plan.embed)


def test_full_plan_sends_more_than_quick_and_tiny_less() -> None:
    full, quick, tiny = load.make_plan(False), load.make_plan(True), load.make_plan(False, tiny=True)
    for f, q, t in zip(full.embed, quick.embed, tiny.embed, strict=True):
        assert f.requests > q.requests >= t.requests
    assert tiny.giveup.clients < quick.giveup.clients


def test_rotated_changes_who_goes_first() -> None:
    names = ["ours", "a", "b"]
    assert [load.rotated(names, k)[0] for k in range(4)] == ["ours", "a", "b", "ours"]
    assert sorted(load.rotated(names, 5)) == sorted(names)
    assert load.rotated([], 3) == []


def test_fit_tokens_keeps_the_longest_prefix_within_the_budget() -> None:
    def count(t: str) -> int:  # one token per word plus two special tokens
        return len(t.split()) + 2

    text = " ".join(f"w{i}" for i in range(50))
    assert count(load.fit_tokens(text, count, 22)) == 22
    assert load.fit_tokens(text, count, 22) == " ".join(f"w{i}" for i in range(20))
    assert load.fit_tokens("short text", count, 22) == "short text"


def test_recommend_bodies_are_seeded_and_valid() -> None:
    from service.schemas import RecommendRequest

    ids = [f"I{i}" for i in range(40)]
    a = load.recommend_bodies(ids, 10, seed=3)
    assert a == load.recommend_bodies(ids, 10, seed=3) and a != load.recommend_bodies(ids, 10, seed=4)
    for body in a:
        req = RecommendRequest.model_validate(body)
        assert len(set(req.history)) == 5 and req.mode == "dense"


def test_cosines_and_bodies() -> None:
    assert load.cosines([[1.0, 0.0], [1.0, 1.0]], [[2.0, 0.0], [-1.0, -1.0]]) == pytest.approx([1.0, -1.0])
    sysm = load.System("ours", ServerProcess("x", [], "http://127.0.0.1:1", Path("x.log")), "/embed",
                       load._ours_body, load._ours_vectors)  # fmt: skip
    bodies = load._bodies(sysm, ["a", "b", "c"], n=2, items=2, offset=2)
    assert bodies == [{"items": [{"text": "c"}, {"text": "a"}]}, {"items": [{"text": "b"}, {"text": "c"}]}]
    assert load._inf_vectors({"data": [{"index": 1, "embedding": [2.0]}, {"index": 0, "embedding": [1.0]}]}) == [
        [1.0],
        [2.0],
    ]


def test_env_pairs() -> None:
    assert load._env_pairs(["A=1", "B=x=y"]) == {"A": "1", "B": "x=y"}
    with pytest.raises(Exception, match="KEY=VALUE"):
        load._env_pairs(["nope"])


# ------------------------------------------------------------------ ports
def test_free_port_can_be_bound_and_loopback_is_enforced() -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", port))
    check_loopback("http://127.0.0.1:8000")
    check_loopback("http://localhost:8000")
    with pytest.raises(ValueError, match="loopback"):
        check_loopback("http://10.0.0.1:8000")


def test_server_process_stops_its_whole_group(tmp_path: Path) -> None:
    # A parent that starts a child sleeping forever: stop() must end both.
    child = "[sys.executable, '-c', 'import time; time.sleep(600)']"
    code = f"import subprocess, sys, time; subprocess.Popen({child}); time.sleep(600)"
    server = ServerProcess("sleeper", [sys.executable, "-c", code], "http://127.0.0.1:1", tmp_path / "s.log")
    server.start()
    assert server.proc is not None
    pgid = server.proc.pid
    with pytest.raises(RuntimeError, match="not ready"):
        server.wait_ready("/", timeout_s=0.5)
    server.stop(timeout_s=5)
    deadline = time.monotonic() + 10
    while True:  # killed members may linger a moment as zombies until init reaps them
        out = subprocess.run(["ps", "-o", "stat=", "-s", str(pgid)], capture_output=True, text=True, check=False)
        alive = [s for s in out.stdout.split() if not s.startswith("Z")]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert alive == []
    server.stop()  # twice is fine


# ------------------------------------------------------------ load client
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn serves

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        kind = body["kind"]
        if kind == "slow":
            time.sleep(1.0)
        code = {"ok": 200, "shed": 503, "bad": 500, "slow": 200, "chunked": 200}[kind]
        payload = json.dumps({"vectors": [[1.0]] * body.get("n", 2)}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        if kind == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            half = len(payload) // 2
            for part in (payload[:half], payload[half:], b""):
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            return
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _two_vectors(data: bytes) -> str | None:
    n = len(json.loads(data)["vectors"])
    return None if n == 2 else f"{n} vectors"


@pytest.mark.parametrize("client", load.CLIENTS)
def test_load_clients_count_ok_shed_errors_and_bad_bodies(http_server: str, client: str) -> None:
    bodies = (
        [{"kind": "ok"}] * 5 + [{"kind": "chunked"}] + [{"kind": "shed"}] * 3 + [{"kind": "bad"}] * 2
        + [{"kind": "ok", "n": 1}]
    )  # fmt: skip
    res, cpu = asyncio.run(
        load._drive(
            http_server,
            "/x",
            bodies,
            clients=4,
            items=2,
            timeout_s=10,
            deadline_s=30,
            check=_two_vectors,
            client=client,
        )
    )
    s = res.summary()
    assert (s["ok"], s["shed"], s["errors"], s["timeouts"], s["requests"]) == (6, 3, 3, 0, 12)
    assert s["statuses"] == {"200": 7, "500": 2, "503": 3}
    assert res.items == 12 and s["p50_ms"] is not None and s["items_per_s"] > 0 and cpu >= 0
    assert any("1 vectors" in e for e in s["error_samples"])


@pytest.mark.parametrize("client", load.CLIENTS)
def test_load_clients_give_up_at_their_timeout_and_go_on(http_server: str, client: str) -> None:
    bodies = [{"kind": "slow"}] * 2 + [{"kind": "ok"}] * 4
    res, _ = asyncio.run(
        load._drive(
            http_server,
            "/x",
            bodies,
            clients=2,
            items=1,
            timeout_s=0.3,
            deadline_s=30,
            check=_two_vectors,
            client=client,
        )
    )
    assert res.timeouts == 2 and len(res.latencies_ms) == 4 and res.errors == 0


def test_raw_clients_stop_at_the_deadline(http_server: str) -> None:
    body = json.dumps({"kind": "ok"}).encode()
    res = asyncio.run(
        run_raw_clients(
            http_server, "/x", [body] * 100_000, clients=1, items_per_request=1, timeout_s=10, deadline_s=0.2
        )
    )
    assert 0 < len(res.latencies_ms) < 100_000


def test_raw_clients_refuse_other_hosts() -> None:
    with pytest.raises(ValueError, match="loopback"):
        asyncio.run(run_raw_clients("http://192.168.1.1:80", "/x", [b"{}"], clients=1, items_per_request=1,
                                    timeout_s=1, deadline_s=1))  # fmt: skip


# -------------------------------------------------------------- renderer
def _fake_result() -> dict[str, Any]:
    def med(x: float) -> dict[str, Any]:
        return {"req_per_s": x, "items_per_s": x, "p50_ms": 10.0, "p95_ms": 20.0, "p99_ms": 30.0, "errors": 0,
                "timeouts": 0, "shed": 0, "errors_total": 1, "timeouts_total": 0, "shed_total": 2,
                "loadavg_1m": [1.0, 2.5]}  # fmt: skip

    embed = [
        {"workload": f"{t} 1x1", "mean_tokens": 120.0, "systems": {"ours": {"median": med(40.0)},
         "infinity-torch": {"median": med(20.0)}}, "ratios": {"infinity-torch": {"throughput": 2.0, "p99": 1.0}}}
        for t in ("long", "short")
    ]  # fmt: skip
    return {
        "started_at": "2026-12-03T10:00:00+00:00",
        "machine": {"cpus": 2},
        "options": {"quick": True, "threads": 2, "rounds": 3, "neighbour": False},
        "artifacts": {"version": "v1"},
        "systems": {
            "ours": {"status": "ok"},
            "infinity-torch": {"status": "ok"},
            "infinity-onnx": {"status": "skipped", "reason": "infinity-emb not installed"},
        },
        "agreement": {"infinity-torch": {"min_cosine": 0.9931}},
        "embed": embed,
        "floor": {"median": {"p50_ms": 7.5, "req_per_s": 120.0}, "rounds": [{"loadavg": [1.2]}, {"loadavg": [2.2]}]},
        "recommend": [
            {
                "clients": 20,
                "systems": {"ours": {"median": med(75.0)}},
                "throughput_over_floor": 0.62,
                "p99_over_floor_p50": 4.0,
            }
        ],
        "giveup": {
            "ours": {
                "clients": 200,
                "items": 32,
                "texts": "short",
                "client_timeout_s": 5.0,
                "burst": {"ok": 12, "timeouts": 188, "shed": 0},
                "idle_ms": 20.0,
                "after_ms": None,
                "after_timed_out": True,
                "after_limit_s": 90.0,
                "after_over_idle": None,
                "loadavg": [3.0, 2.0, 1.0],
            }
        },
    }


def test_render_markdown_holds_every_figure_and_the_load() -> None:
    md = load.render_markdown(_fake_result())
    assert "--quick" in md and "| long 1x1 | 120 | ours | 40.0 |" in md
    assert "| long 1x1 | 2.00× | 1.00× |" in md
    assert "infinity-onnx: skipped (infinity-emb not installed)" in md
    assert "min cosine 0.9931" in md
    assert "p50 7.50 ms, 120.0 req/s (load 1.2–2.2)" in md
    assert "| 20 | 75.0 | 10.0 | 20.0 | 30.0 | 1 | 2 | 0.62× | 4.0× | 1.0–2.5 |" in md
    assert "| 12 / 188 / 0 | 20.0 | > 90,000 | – | 3.0 |" in md


def test_results_md_section_is_replaced_not_duplicated(tmp_path: Path) -> None:
    page = tmp_path / "RESULTS.md"
    page.write_text("# Results\n\n<!-- BEGIN seqrec -->\nkeep me\n<!-- END seqrec -->\n")
    src = tmp_path / "serving.json"
    src.write_text(json.dumps(_fake_result()))
    assert load.main(["--results-md", str(page), "--from", str(src)]) == 0
    assert load.main(["--results-md", str(page), "--from", str(src)]) == 0
    text = page.read_text()
    assert text.count("<!-- BEGIN serving -->") == 1 and "keep me" in text and "## Serving under load" in text


def test_infinity_is_reported_missing_with_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    python, why = load.find_infinity(str(tmp_path / "nope" / "python"))
    assert python is None and "not installed" in why and "nope" in why
    monkeypatch.chdir(tmp_path)  # a relative path is taken from here, and a missing one is not replaced
    python, why = load.find_infinity("venv/bin/python")
    assert python is None and str(tmp_path / "venv" / "bin" / "python") in why and sys.executable not in why


def test_text_pools_hold_long_texts_under_the_max_length_and_short_titles() -> None:
    from service.encoding.tokenize import TextTokenizer

    tok_dir = load.base_model_dir()  # the packaged MiniLM tokenizer, the one the export copies
    pools = load.text_pools(tok_dir, n=64)
    tok = TextTokenizer(tok_dir, max_length=512)
    long, long_mean = pools["long"]
    short, short_mean = pools["short"]
    assert len(long) == 64 and len(short) == 64
    assert all(110 <= len(ids) <= 124 for ids in tok.encode(long))  # never truncated at 128
    assert max(len(ids) for ids in tok.encode(short)) <= 40 and short_mean < 16 < 110 <= long_mean
    assert pools == load.text_pools(tok_dir, n=64)  # seeded


def test_peer_model_folders(tmp_path: Path) -> None:
    torch_dir = load.torch_model_folder(tmp_path / "torch")
    assert json.loads((torch_dir / "sentence_bert_config.json").read_text())["max_seq_length"] == load.MAX_LENGTH
    assert (torch_dir / "model.safetensors").is_symlink() and (torch_dir / "1_Pooling" / "config.json").exists()
