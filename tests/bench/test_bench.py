"""The benchmark's arithmetic, target verdicts, report rendering and load bounds; one
slow test runs `tailor bench --quick --no-vllm` on the real assets."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from bench.api_load import api_block, flop_limit, run_level
from bench.dialogues import DIALOGUES, messages, pick_dialogues
from bench.floor import flop_floor_s, matmul_gflops_from, matmul_shapes, measure_matmul_gflops
from bench.latency import latency_block, timed_turn
from bench.ranking import GENERATION_ASK, generation_messages, summarize_local
from bench.report import TARGETS, evaluate_targets, headline, markdown
from bench.run import make_plan
from bench.servers import child_env, settings_env
from bench.stats import percentile, summary

REQUIRED_KEYS = ("verbalizer_speedup", "ranking_vs_flop_floor", "ttfr_p50_s", "ttfr_p95_s",
                 "turn_p50_s", "turn_p95_s", "retrieval_p50_ms", "eval_users_per_s",
                 "api_p95_s_at_16")


# Statistics and arithmetic ------------------------------------------------------------
def test_percentiles_interpolate_between_ranks():
    xs = [4.0, 1.0, 3.0, 2.0, 10.0]  # order does not matter
    assert percentile(xs, 0) == 1.0
    assert percentile(xs, 50) == 3.0
    assert percentile(xs, 100) == 10.0
    assert percentile(xs, 95) == pytest.approx(4.0 + 0.8 * 6.0)  # pos 3.8 between 4 and 10


def test_percentile_rejects_no_samples_and_bad_q():
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)
    with pytest.raises(ValueError, match="0 to 100"):
        percentile([1.0], 101)


def test_summary_reports_its_sample_size():
    s = summary([2.0, 4.0, 6.0, 8.0])
    assert s == {"n": 4, "p50": 5.0, "p95": pytest.approx(7.7), "mean": 5.0, "min": 2.0,
                 "max": 8.0}


def test_flop_floor_is_the_flops_at_the_peak_rate():
    assert flop_floor_s(52.47e9, 50.0) == pytest.approx(1.0494)
    with pytest.raises(ValueError):
        flop_floor_s(1.0, 0.0)


def test_a_ranking_prompts_flops_count_weights_attention_and_one_row_of_logits():
    from agent.llm.flops import Shape, attention_flops, forward_flops

    # SmolLM2-135M: 30 layers, 9 heads of 64, hidden 576, vocab 49,152
    smol = Shape(layer_params=106_168_320, layers=30, attn_dim=576, hidden=576, vocab=49_152)
    weights = 2 * 106_168_320 * 222
    attention = 4 * 30 * 576 * (222 * 411 + 222 * 223 / 2)  # each new token sees 411 + i
    head = 2 * 49_152 * 576
    assert attention_flops(smol, 222, 411) == pytest.approx(attention)
    assert forward_flops(smol, 222, past=411) == pytest.approx(weights + attention + head)
    assert 0.1 < attention / (weights + attention) < 0.2  # why the old floor was too low
    # more context costs more; the cached prefix's own weights cost nothing here
    assert forward_flops(smol, 222, past=800) > forward_flops(smol, 222, past=411)
    assert forward_flops(smol, 222, past=411) < forward_flops(smol, 633)


def test_matmul_rate_and_shapes():
    assert matmul_gflops_from(10, 20, 30, repeats=1000, seconds=0.012) == pytest.approx(1.0)
    dims = {"hidden": 576, "intermediate": 1536}
    assert matmul_shapes(dims, [200, 600]) == [(200, 576, 1536), (200, 1536, 576),
                                               (200, 576, 576), (600, 576, 1536),
                                               (600, 1536, 576), (600, 576, 576)]


def test_measured_matmul_peak_is_the_best_shape_and_kernel():
    got = measure_matmul_gflops([(8, 16, 16), (64, 64, 64)], seconds=0.02, rounds=1)
    assert got["peak_gflops"] == max(s["gflops"] for s in got["shapes"]) > 0
    assert got["peak_shape"] in ([8, 16, 16], [64, 64, 64])
    assert {s["kernel"] for s in got["shapes"]} == {"matmul", "packed"}  # this torch has both
    assert got["peak_kernel"] in ("matmul", "packed")


def test_the_flop_limit_is_the_peak_over_the_flops_of_an_answered_turn():
    level = {"concurrency": 4, "answered": 20, "turns_per_s": 0.9, "latency_s": {"p95": 5.0},
             "server_work": {"flops": 20 * 60e9, "tokens": 4400, "forward_passes": 20,
                             "seconds": 21.0}}
    got = flop_limit(level, peak_gflops=66.0)
    assert got["flops_per_turn"] == pytest.approx(60e9)
    assert got["flop_limited_turns_per_s"] == pytest.approx(1.1)
    assert got["vs_flop_limit"] == pytest.approx(0.9 / 1.1)
    assert flop_limit({**level, "server_work": None}, 66.0) == {**level, "server_work": None}
    block = api_block({"1": {**level, "concurrency": 1, "turns_per_s": 0.7, "wall_s": 10.0},
                       "4": {**level, "wall_s": 20.0},
                       "16": {**level, "concurrency": 16, "answered": 10, "wall_s": 20.0,
                              "turns_per_s": 0.5, "server_work": {"flops": 10 * 60e9}}},
                      peak_gflops=66.0)
    # saturation pools the levels of 4 sessions or more: 30 turns in 40 s
    assert block["api_saturated_turns_per_s"] == pytest.approx(0.75)
    assert block["api_flop_limited_turns_per_s"] == pytest.approx(1.1)
    assert block["api_vs_flop_limit"] == pytest.approx(0.75 / 1.1)
    assert block["levels"]["1"]["vs_flop_limit"] == pytest.approx(0.7 / 1.1)


def test_ranking_ratios_are_medians_of_per_prompt_ratios():
    def row(verb, gen, floor):
        return {"prompt": 600, "cached_prefix": 400, "computed": 200, "answer_tokens": 19,
                "verbalizer_s": verb, "forward_cached_s": verb, "forward_full_s": 3 * verb,
                "generation_s": gen, "floor_cached_s": floor, "floor_full_s": 3 * floor}

    got = summarize_local([row(1.0, 2.0, 0.5), row(1.0, 10.0, 1.0), row(2.0, 8.0, 0.5)])
    assert got["verbalizer_speedup"] == 4.0  # ratios 2, 10, 4
    assert got["ranking_vs_flop_floor"] == 2.0  # ratios 2, 1, 4
    assert got["seconds"]["generation_s"]["n"] == 3


def test_generation_prompt_keeps_everything_but_the_last_question():
    msgs = [{"role": "system", "content": "Pick one."},
            {"role": "user", "content": "Liked: Alien\nA. Heat | 90s\nLetter?"}]
    got = generation_messages(msgs)
    assert got[0] is msgs[0]  # the cached prefix is the same
    assert got[1]["content"] == "Liked: Alien\nA. Heat | 90s\n" + GENERATION_ASK
    assert msgs[1]["content"].endswith("Letter?")  # the input is left as it was


# Targets and report -------------------------------------------------------------------
def test_target_verdicts_at_and_around_the_bounds():
    t = evaluate_targets({"verbalizer_speedup": 30.0, "ranking_vs_flop_floor": 2.01,
                          "ttfr_p50_s": 1.5, "turn_p50_s": None, "api_p95_16_vs_1": 1.2})
    assert t["verbalizer_speedup"]["met"] is True  # >= 30, exactly on the bound
    assert t["ranking_vs_flop_floor"]["met"] is False
    assert t["ttfr_p50_s"]["met"] is True
    assert t["turn_p50_s"]["met"] is None  # not measured is neither met nor missed
    assert t["api_p95_16_vs_1"]["met"] is True
    assert [x.key for x in TARGETS] == list(t)
    assert evaluate_targets({"verbalizer_speedup": 2.3})["verbalizer_speedup"]["met"] is False


def test_headline_reads_each_figure_from_its_section():
    sections = {"ranking": {"verbalizer_speedup": 2.5, "ranking_vs_flop_floor": 1.4},
                "latency": {"template": {"ttfr_p50_s": 0.9, "turn_p50_s": 1.0},
                            "llm_explanations": {"turn_p50_s": 6.0, "turn_p95_s": 7.0}},
                "retrieval": {"real": {"p50": 40.0}},
                "eval": {"eval_users_per_s": {"hybrid": 5.0}},
                "api": api_block({"1": {"latency_s": {"p50": 1.0, "p95": 1.5}},
                                  "16": {"latency_s": {"p50": 9.0, "p95": 12.0}}})}
    s = headline(sections)
    assert set(REQUIRED_KEYS) <= set(s)
    assert (s["verbalizer_speedup"], s["ttfr_p50_s"], s["turn_p50_s"]) == (2.5, 0.9, 6.0)
    assert s["turn_template_p50_s"] == 1.0 and s["retrieval_p50_ms"] == 40.0
    assert s["api_p95_s_at_16"] == 12.0 and s["api_p95_16_vs_1"] == 8.0
    assert s["vllm_turn_p50_s"] is None  # no vllm section


def test_api_block_without_the_single_session_level_has_no_ratio():
    b = api_block({"16": {"latency_s": {"p50": 9.0, "p95": 12.0}}})
    assert b["api_p95_s_at_16"] == 12.0 and b["api_p95_16_vs_1"] is None


def test_markdown_lists_targets_with_verdicts_and_every_figure():
    summary_ = {"verbalizer_speedup": 2.34, "ttfr_p50_s": 1.2, "turn_p50_s": None,
                "eval_users_per_s": {"popularity": 585.0, "llm-zero": 0.61}}
    result = {"quick": True, "git_sha": "abc123", "wall_s": 95.0,
              "model": {"name": "smollm2-135m-instruct",
                        "params": {"total": 134_515_008, "non_embedding": 106_203_456}},
              "machine": {"cpu_count": 2, "torch_threads": 2},
              "summary": summary_, "targets": evaluate_targets(summary_),
              "method": {"ttfr": "until the picks"}, "skipped": ["vLLM (--no-vllm)"]}
    md = markdown(result)
    assert md.startswith("# tailor bench (quick)")
    assert "git abc123" in md and "135 M parameters" in md and "106 M outside" in md
    assert "| verbalizer ranking ≥ 30× faster than generation | 2.34 | >= 30 | **missed** |" in md
    assert "| time to first recommendation p50 ≤ 1.5 s | 1.2 | <= 1.5 | met |" in md
    assert "| full turn with 3 explanations p50 ≤ 4 s | – | <= 4 | not measured |" in md
    assert "| `eval_users_per_s` | popularity 585, llm-zero 0.61 |" in md
    assert "- **ttfr**: until the picks" in md and "Not measured: vLLM (--no-vllm)." in md


# Turns --------------------------------------------------------------------------------
def reply(items=("x",), notices=()):
    return SimpleNamespace(recommendations=items, notices=notices, state="next",
                           timings={"parse": 0.1, "retrieve": 0.2, "rank": 0.3, "explain": 5.0})


def test_ttfr_without_turn_stream_is_parse_retrieve_rank():
    class Plain:
        def turn(self, message, state):
            return reply()

    got = timed_turn(Plain(), "hi", None)
    assert got["ttfr_s"] == pytest.approx(0.6) and got["how"] == "timings"


def test_ttfr_with_turn_stream_is_when_the_picks_arrive():
    import time

    class Streaming:
        def turn_stream(self, message, state):
            yield SimpleNamespace(kind="picks", reply=reply())
            time.sleep(0.05)  # explanations being written
            yield SimpleNamespace(kind="final", reply=reply())

    got = timed_turn(Streaming(), "hi", None)
    assert got["how"] == "turn_stream" and got["reply"].state == "next"
    assert got["ttfr_s"] < 0.04 <= got["turn_s"]


def test_latency_block_counts_turns_and_notices():
    b = latency_block([1.0, 2.0, 3.0], [2.0, 4.0, 6.0], empty=1, degraded=1,
                      notices=["slow", "slow"], how=["turn_stream"])
    assert (b["turns"], b["turns_without_items"], b["turns_with_notices"]) == (3, 1, 1)
    assert (b["ttfr_p50_s"], b["turn_p50_s"], b["notices"]) == (2.0, 4.0, ["slow"])


def test_scripted_dialogues_can_be_cut_to_any_number_of_turns():
    assert len(messages()) == 21
    for n in (1, 2, 5, 12, 21):
        assert len(messages(pick_dialogues(n))) == n
    assert pick_dialogues(4)[0] == DIALOGUES[0]  # whole dialogues first, state carried on


def test_quick_plan_is_smaller_everywhere():
    quick, full = make_plan(True, False), make_plan(False, True)
    for field in ("prompts", "turns", "llm_turns", "retrieval_states", "synthetic_items",
                  "eval_users", "api_turns"):
        assert getattr(quick, field) < getattr(full, field), field
    assert full.synthetic_items == 100_000 and full.api_levels == (1, 4, 16, 64)


# Servers and load ---------------------------------------------------------------------
def test_child_settings_travel_as_tailor_variables_and_replace_the_parents(tmp_path):
    from agent.settings import Settings

    env = child_env({"PATH": "/bin", "TAILOR_LLM_URL": "http://stale"},
                    settings_env(Settings(home=tmp_path), llm_url="http://127.0.0.1:9/v1",
                                 llm_model="m", llm_timeout=60.0))
    assert env["PATH"] == "/bin" and env["TAILOR_LLM_URL"] == "http://127.0.0.1:9/v1"
    assert Settings.from_env(env).llm_timeout == 60.0  # the child rebuilds the same settings
    assert Settings.from_env(env).home == tmp_path
    assert "TAILOR_API_KEY" not in settings_env(Settings(api_key="secret"))


class FakeAPI(BaseHTTPRequestHandler):
    """Sessions and messages as the real API shapes them; counts what it served."""

    lock = threading.Lock()
    messages = 0
    in_flight = 0
    most_in_flight = 0

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        cls = type(self)
        if self.path == "/v1/sessions":
            body = {"id": "s1"}
        else:
            with cls.lock:
                cls.messages += 1
                cls.in_flight += 1
                cls.most_in_flight = max(cls.most_in_flight, cls.in_flight)
            threading.Event().wait(0.02)
            with cls.lock:
                cls.in_flight -= 1
            body = {"text": "ok", "items": [], "notices": []}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_load_level_sends_exactly_its_bounded_number_of_turns():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeAPI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        got = run_level(base, DIALOGUES, concurrency=4, turns=10, timeout=10)
    finally:
        server.shutdown()
    assert got["requests"] == 10 == FakeAPI.messages and got["errors"] == 0
    assert got["latency_s"]["n"] == 10 and got["latency_s"]["p50"] >= 0.02
    assert 2 <= FakeAPI.most_in_flight <= 4  # concurrent, never more than the level


def test_an_unreachable_api_is_counted_as_errors_and_still_ends():
    from bench.servers import free_port

    got = run_level(f"http://127.0.0.1:{free_port()}", DIALOGUES, concurrency=2, turns=5,
                    timeout=2)
    assert got["requests"] == 5 and got["errors"] == 5 and got["latency_s"] == {"n": 0}


# The real thing, short ----------------------------------------------------------------
@pytest.mark.assets
@pytest.mark.slow
def test_tailor_bench_quick_writes_every_required_figure(real_settings, tmp_path):
    out = tmp_path / "bench"
    done = subprocess.run([sys.executable, "-m", "agent", "bench", "--quick", "--no-vllm",
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "bench.json").read_text())
    for key in REQUIRED_KEYS:
        assert key in result["summary"], key
    s = result["summary"]
    for key in REQUIRED_KEYS[:-1]:  # everything but the API (needs vLLM) was measured
        assert s[key] is not None, key
    assert s["api_p95_s_at_16"] is None and result["targets"]["api_p95_16_vs_1"]["met"] is None
    assert s["ttfr_p50_s"] <= s["ttfr_p95_s"] and s["verbalizer_speedup"] > 0
    # the in-process API load: the server counted its model's FLOPs, so each level has a
    # FLOP limit (a real rate: between a tenth and all of it on any CPU)
    local = result["sections"]["api_local"]["levels"]
    assert set(local) == {"1", "4"} and all(lv["errors"] == 0 for lv in local.values())
    assert all(lv["server_work"]["flops"] > 1e9 for lv in local.values())
    assert 0.1 < s["local_api_vs_flop_limit"] < 1.0
    assert set(s["eval_users_per_s"]) == {"popularity", "hybrid", "llm-zero"}
    assert result["git_sha"] and result["machine"]["cpu_count"] and result["prompt_tokens"]
    assert result["errors"] == {}
    assert "## Targets" in (out / "bench.md").read_text()


def test_only_some_sections_still_builds_the_prompts_they_need():
    from agent.errors import ConfigError
    from bench.run import sections_to_run, skipped

    assert sections_to_run(("eval", "vllm"), vllm=True) == ["floor", "eval", "vllm"]
    assert sections_to_run(("vllm",), vllm=False) == []  # --no-vllm wins
    assert sections_to_run(("api_local",), vllm=False) == ["floor", "api_local"]
    assert "vllm" not in sections_to_run(None, vllm=False)
    with pytest.raises(ConfigError, match="unknown bench section"):
        sections_to_run(("api",), vllm=True)
    assert skipped(make_plan(False, True, only=("vllm",))) == [
        "sections not asked for with --only: ranking, latency, retrieval, index_build, eval, "
        "api_local"]
    assert skipped(make_plan(False, True)) == []


def test_no_two_sessions_of_the_api_load_send_the_same_conversation():
    from bench.api_load import level_dialogues
    from bench.dialogues import load_dialogue

    plan = make_plan(False, True)
    sessions = [d for level in level_dialogues(list(plan.api_levels), plan.api_turns,
                                               load_dialogue) for d in level]
    openers = [d[0] for d in sessions] + [load_dialogue(0)[0]]  # the warm-up too
    assert len(set(openers)) == len(openers) == 3 * 48 + 128 + 1


class BusyAPI(FakeAPI):
    """Sheds every other message with 429 and a Retry-After, as admission control does."""

    count = 0

    def do_POST(self):
        cls = type(self)
        if self.path != "/v1/sessions":
            with cls.lock:
                cls.count += 1
                shed = cls.count % 2 == 0
            if shed:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(429)
                self.send_header("Retry-After", "1")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        super().do_POST()


def test_a_shed_turn_is_counted_apart_from_errors_and_its_client_backs_off(monkeypatch):
    import bench.api_load as load

    waits = []
    monkeypatch.setattr(load.time, "sleep", waits.append)
    server = ThreadingHTTPServer(("127.0.0.1", 0), BusyAPI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        got = run_level(f"http://127.0.0.1:{server.server_address[1]}", DIALOGUES,
                        concurrency=1, turns=6, timeout=10)
    finally:
        server.shutdown()
    assert got["requests"] == 6 and got["shed"] == 3 and got["errors"] == 0
    assert got["shed_share"] == 0.5 and got["latency_s"]["n"] == 3
    assert waits == [1.0, 1.0, 1.0]  # the Retry-After it was given
    block = api_block({"64": got})
    assert block["api_shed_share_at_64"] == 0.5 and block["api_turns_per_s_at_64"] > 0
