"""What each ``tailor`` command does, given the settings and its parsed arguments.

Heavy libraries load inside each command, so importing this module (and `tailor --help`)
stays instant."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from agent.errors import InputError
from agent.settings import DATASETS, Settings


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_assets(settings: Settings, args) -> int:
    from agent.data.assets import prepare_all

    t = time.perf_counter()
    paths = prepare_all(settings, _log)
    _log(f"assets ready in {time.perf_counter() - t:.0f}s: {json.dumps(paths)}")
    return 0


def cmd_data(settings: Settings, args) -> int:
    from agent.domain.movielens.loaders import prepare_dataset

    source = args.source or settings.data_source
    prepare_dataset(args.dataset or settings.dataset, source, settings.downloads_dir,
                    settings.data_dir(args.dataset), log=_log)
    return 0


def cmd_import(settings: Settings, args) -> int:
    from agent.data.imports import import_dataset

    result = import_dataset(args.name, settings.home / "data", Path(args.items),
                            Path(args.interactions), Path(args.users) if args.users else None,
                            Path(args.schema) if args.schema else None, log=_log)
    m = result.meta
    print(f"imported {args.name}: {m['items']} items, {m['users']} users, "
          f"{m['interactions']} interactions into {result.folder}")
    how = "inferred; edit it, then import again with --schema" if result.inferred else "as given"
    print(f"schema ({how}): {result.schema_path}")
    return 0


def cmd_schema(settings: Settings, args) -> int:
    from agent.domain.movielens import SCHEMA
    from agent.domain.schema import schema_path

    folder = settings.home / "data" / args.name
    path = SCHEMA if args.name in DATASETS else schema_path(folder)
    if not path.is_file():
        raise InputError(f"no dataset {args.name!r} under {settings.home / 'data'}; "
                         f"`tailor import {args.name} --items ... --interactions ...` first")
    print(path.read_text(encoding="utf-8"), end="")
    return 0


def cmd_index(settings: Settings, args) -> int:
    from agent.data.assets import prepare_embedder
    from agent.data.catalog import Catalog
    from agent.retrieve.embeddings import SentenceEmbedder
    from agent.retrieve.index import build_index, make_client

    catalog = Catalog.load(settings.data_dir())
    embedder = SentenceEmbedder(str(prepare_embedder(settings, _log)))
    t = time.perf_counter()
    info = build_index(make_client(settings), catalog, embedder, settings.dataset, log=_log)
    _log(f"index done in {time.perf_counter() - t:.1f}s")
    return 0 if info else 1


CF_IN_SETUP_MAX = 150_000  # interactions up to which set-up trains SASRec and the fusion


def _interactions(settings: Settings) -> int:
    import json

    return json.loads((settings.data_dir() / "meta.json").read_text())["interactions"]


def cmd_setup(settings: Settings, args) -> int:
    t = time.perf_counter()
    cmd_assets(settings, args)
    if not (settings.data_dir() / "items.jsonl").exists() or args.force:
        args.dataset, args.source = settings.dataset, None
        cmd_data(settings, args)
    cmd_index(settings, args)
    # The sequential model and the learned fusion: on ML-100K they lift NDCG@10 over
    # SASRec alone and the simulated chats' success over RRF (README, issue 16), at ~12
    # min of set-up on 2 cores, once. --no-cf leaves them out (the chat then uses RRF);
    # larger datasets (ML-1M) take hours on a CPU, so there `tailor train-cf` is explicit.
    if not args.no_cf and _interactions(settings) <= CF_IN_SETUP_MAX:
        from agent.interfaces.training import train_collaborative

        train_collaborative(settings)
    elif not args.no_cf:
        _log(f"note: SASRec and the fusion are not trained for {settings.dataset} here "
             f"(hours on a CPU); `tailor train-cf --dataset {settings.dataset}` trains them")
    _log(f"setup done in {time.perf_counter() - t:.0f}s; data home {settings.home}")
    return 0


def _recommender(settings: Settings):
    from agent.build import build_recommender

    return build_recommender(settings, log=_log)


def cmd_ask(settings: Settings, args) -> int:
    from agent.interfaces.sessions import check_session_id, open_store
    from agent.recommender import clean_message

    clean_message(args.message)  # bad input fails before any model loads
    store = state = None
    if args.session:
        check_session_id(args.session)
        store = open_store(settings)
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


QUIT_WORDS = ("quit", "exit", ":q", "bye")


def chat_loop(rec, read=input, write=print) -> int:
    """The terminal chat. When the model writes the explanations (``--explain llm``,
    several seconds), the picks are shown as soon as they are ranked, then the answer.
    ``quit`` (or exit, :q, bye), an empty line or Ctrl-D ends it."""
    from agent.errors import InputError

    state = None
    write("Tell me what you feel like watching (quit, an empty line or Ctrl-D to end).")
    while True:
        try:
            message = read("> ")
        except EOFError:
            write("")  # Ctrl-D leaves the cursor after the prompt
            return 0
        if not message.strip() or message.strip().lower() in QUIT_WORDS:
            return 0
        try:
            for event in rec.turn_stream(message, state, stream=False):
                if event.kind == "picks" and rec.explain_mode == "llm":
                    titles = ", ".join(r.item.label for r in event.reply.recommendations)
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
    from agent.interfaces.app import launch

    launch(_recommender(settings), settings, host=args.host, port=args.port)
    return 0


EVAL_OUT = "out/eval"


def _eval_understanding(settings: Settings, args) -> int:
    from eval.understanding import HELDOUT
    from eval.understanding_run import run_understanding

    path = HELDOUT if args.understanding is True else Path(args.understanding)
    if args.out == EVAL_OUT:  # not over the ranking report
        args.out = "out/understanding"
    report = run_understanding(settings, path, Path(args.out), log=_log)
    _log(f"agree {report['agree']:.1%}, picks fit {report['fit']:.1%}, agree and fit "
         f"{report['agree_and_fit']:.1%} on {report['n']} requests; report written to "
         f"{args.out}/report.json, report.md ({report['wall_time_s']:.0f}s)")
    return 0


def _eval_dialogue_suite(settings: Settings, args) -> int:
    from eval.dialogue_suite import packaged_suite, run_suite

    path = packaged_suite() if args.dialogue_suite is True else Path(args.dialogue_suite)
    if args.out == EVAL_OUT:
        args.out = "out/dialogues"
    report = run_suite(settings, path, Path(args.out), fake_llm=args.fake_llm, log=_log)
    s = report["summary"]
    _log(f"dialogues fully passed {s['dialogues']['passed']}/{s['dialogues']['total']} "
         f"({s['dialogues']['rate']:.0%}); turns {s['turns']['rate']:.0%}, checks "
         f"{s['checks']['rate']:.0%}; report written to {args.out}/report.json, report.md "
         f"({report['timing_s']['wall']:.0f}s)")
    return 0  # a completed run is a measurement, whatever it measured


def _eval_withheld(settings: Settings, args) -> int:
    from agent.errors import ConfigError
    from eval.withheld import run_withheld

    if args.withheld < 1:
        raise ConfigError(f"--withheld needs 1 or more titles, not {args.withheld}")
    if args.out == EVAL_OUT:
        args.out = "out/withheld"
    report = run_withheld(settings, args.withheld, Path(args.out), log=_log,
                          guess=args.guess_titles)
    for arm in ("with_reference", "without_reference", "llm_guess", "constant_guess"):
        if arm in report:
            s = report[arm]["summary"]
            _log(f"{arm}: said not in catalog {s['said_not_in_catalog']:.0%}, turns sharing a "
                 f"genre {s['turns_sharing_a_genre']:.0%}, picks {s['picks_sharing_a_genre']:.0%}")
    _log(f"report written to {args.out}/withheld.json, withheld.md "
         f"({report['wall_time_s']:.0f}s)")
    return 0


# An imported catalog's evaluation: the systems that need no film prompt, no simulated
# conversations (the simulated user speaks of films).
IMPORTED_SYSTEMS = "popularity,itemknn,sasrec,retrieval,hybrid,tailor"


def _imported_eval_args(settings: Settings, args) -> None:
    """Check and fill ``args`` for an imported catalog: clear errors for what is film-only."""
    from agent.errors import ConfigError

    film_only = [flag for flag, on in (("--withheld", args.withheld is not None),
                                       ("--dialogue-suite", args.dialogue_suite),
                                       ("--understanding", args.understanding)) if on]
    systems = [s for s in (args.systems or IMPORTED_SYSTEMS).split(",") if s.strip()]
    if args.dialogues:
        film_only.append("--dialogues (the simulated user speaks of films)")
    if film_only:
        raise ConfigError(f"{', '.join(film_only)}: MovieLens only for now; {settings.dataset!r} "
                          f"is an imported catalog (its systems: {IMPORTED_SYSTEMS}, "
                          "llm-zero, llm-few, llm-lora)")
    args.systems, args.dialogues = ",".join(systems), 0


def cmd_eval(settings: Settings, args) -> int:
    if settings.dataset not in DATASETS:
        _imported_eval_args(settings, args)
    elif args.dialogues is None:
        args.dialogues = 20
    if args.withheld is not None:
        return _eval_withheld(settings, args)
    if args.dialogue_suite:
        return _eval_dialogue_suite(settings, args)
    if args.understanding:
        return _eval_understanding(settings, args)
    from eval.run import DEFAULT_SYSTEMS, run_evaluation

    systems = args.systems or DEFAULT_SYSTEMS
    if "llm-lora" in systems and not settings.adapter:  # before minutes of set-up, not after
        from agent.errors import ConfigError

        raise ConfigError("llm-lora needs an adapter: --adapter NAME or TAILOR_ADAPTER "
                          "(train one with `tailor finetune`)")

    report = run_evaluation(settings, systems, Path(args.out), args.users,
                            args.seed, log=_log, conversation_users=args.dialogues,
                            llm_users=args.llm_users, ablation=args.ablation,
                            tail_choice=args.tail_choice,
                            fusion_users=args.fusion_users)
    _log(f"report written to {args.out}/report.json, report.md, accuracy_vs_tail.png "
         f"({report['wall_time_s']:.0f}s)")
    return 0


def cmd_serve_llm(settings: Settings, args) -> int:
    from agent.llm.serving import serve_until_interrupted

    extra = args.vllm_args[1:] if args.vllm_args[:1] == ["--"] else args.vllm_args
    return serve_until_interrupted(settings, port=args.port, wait_s=args.wait, eager=args.eager,
                                   kv_cache_gib=args.kv_cache_gib, extra_args=extra, log=_log)


def cmd_quantize_llm(settings: Settings, args) -> int:
    from agent.build import model_location
    from agent.llm.quantize import quantize_w8a8

    src = Path(model_location(settings))
    dst = Path(args.out) if args.out else settings.models_dir / f"{src.name}-w8a8"
    quantize_w8a8(src, dst, log=_log)
    _log(f"serve it with: TAILOR_MODEL={dst} tailor serve-llm")
    return 0


def cmd_serve(settings: Settings, args) -> int:
    from agent.interfaces.api import serve

    serve(settings, args.host, args.port, log_fn=_log)
    return 0


def cmd_finetune(settings: Settings, args) -> int:
    if args.task == "state":  # its synthetic requests name films, people and decades
        settings.require_movielens("tailor finetune --task state")
    from finetune.config import load_config
    from finetune.run import run_finetune

    # --task state without --config takes the state recipe (its own adapter name).
    path = args.config or ("cpu-state-135m" if args.task == "state" else None)
    config = load_config(path, name=args.name, max_minutes=args.max_minutes,
                         epochs=args.epochs, val_users=args.val_users, task=args.task,
                         state_examples=args.examples,
                         candidates_from=args.candidates_from)
    run_finetune(settings, config, log=_log, fresh=args.fresh,
                 include_feedback=args.include_feedback)
    return 0


def cmd_finetune_report(settings: Settings, args) -> int:
    from finetune.report import compare_on_test

    report = compare_on_test(settings, args.adapter, Path(args.out), args.users, log=_log)
    _log(f"written to {args.out}/finetune_report.json and .md ({report['wall_time_s']:.0f}s)")
    return 0


def cmd_bench(settings: Settings, args) -> int:
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
