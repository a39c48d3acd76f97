"""Command line: parse arguments, call the library, format output. Exit 0 ok, 2 bad usage or spec, 1 failure.

The CLI owns the process: it gives moprune's loggers their handler (stderr, one line a message; ``-v`` for debug
detail) and keeps Optuna's per-trial log lines off, since each trial's progress line already says how it ended.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import signal
import sys
from collections.abc import Callable, Sequence

from .errors import MopruneError, SpecError

EPILOG = """examples:
  moprune run studies/quickstart.yaml
  moprune run studies/quickstart.yaml --workers 2 --storage postgresql://user@dbhost/moprune
  moprune status studies/quickstart.yaml
  moprune pareto studies/quickstart.yaml --format json
"""


class _Lines(logging.Formatter):
    """``message`` for information, ``warning: message`` / ``error: message`` above it."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING and not text.startswith(("warning:", "error:")):
            return f"{logging.getLevelName(record.levelno).lower()}: {text}"
        return text


def configure_logging(verbose: bool = False) -> None:
    """moprune's messages to stderr; Optuna's own per-trial lines off (moprune reports trials itself)."""
    import optuna

    logger = logging.getLogger("moprune")
    for handler in list(logger.handlers):
        if getattr(handler, "_moprune_cli", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Lines("%(message)s"))
    handler._moprune_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    optuna.logging.set_verbosity(optuna.logging.ERROR)


def cmd_run(args: argparse.Namespace) -> int:
    from .pareto import pareto_frame
    from .report import format_table
    from .search import run_study, run_workers
    from .search.interrupts import stop_once
    from .spec import load_spec

    spec = load_spec(args.spec)
    # a scheduler's SIGTERM (preemption) ends a run as Ctrl-C does: the running trial is recorded as interrupted
    previous = signal.signal(signal.SIGTERM, stop_once)
    try:
        if args.workers > 1:
            study = run_workers(spec, workers=args.workers, storage=args.storage, n_trials=args.n_trials,
                                timeout_s=args.timeout)
        else:
            study = run_study(spec, storage=args.storage, n_trials=args.n_trials, timeout_s=args.timeout)
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"\nPareto front of {spec.name!r} (feasible trials; `moprune pareto {args.spec} --all` lists every trial):")
    print(format_table(pareto_frame(study), list(spec.objectives)))
    _print_measured_note(study)
    return 0


def _print_measured_note(study) -> None:
    """Under a table of numbers: the device, timer, threads and energy meter they came from."""
    from .report import measured_note

    for line in measured_note(study):
        print(line)


def cmd_status(args: argparse.Namespace) -> int:
    from .report import format_status, study_status
    from .search import open_screen_study, open_study
    from .spec import load_spec

    spec = load_spec(args.spec)
    study = open_study(spec, args.storage)
    print(format_status(study_status(study, spec, open_screen_study(spec, args.storage))))
    return 0


def cmd_pareto(args: argparse.Namespace) -> int:
    from .pareto import pareto_frame
    from .report import format_table, to_records
    from .search import open_study
    from .spec import load_spec

    spec = load_spec(args.spec)
    study = open_study(spec, args.storage)
    frame = pareto_frame(study, include_all=args.all)
    objectives = list(spec.objectives)
    if args.rank_by:
        from .pareto import directions_of, parse_weights, rank_by
        from .record import baseline_of

        weights = parse_weights(args.rank_by, objectives, directions_of(study), baseline_of(study), flag="--rank-by")
        frame = rank_by(frame, weights)
    if args.format == "json":
        print(json.dumps(to_records(frame, objectives), indent=2))
    elif args.format == "csv":
        flat = frame.drop(columns=["plan", "constraints"]).assign(plan=frame["plan"].map(json.dumps))
        print(flat.to_csv(index=False), end="")
    else:
        print(format_table(frame, objectives))
        _print_measured_note(study)
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .report import write_dashboard
    from .search import open_screen_study, open_study
    from .spec import load_spec

    spec = load_spec(args.spec)
    study = open_study(spec, args.storage)
    out = Path(args.out) if args.out else Path("dashboards") / spec.name / "index.html"
    written = write_dashboard(study, spec, out, open_screen_study(spec, args.storage), pick=args.pick)
    print(f"wrote {written} (self-contained; open it in a browser)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .ship import export_trial
    from .search import open_study
    from .spec import load_spec

    spec = load_spec(args.spec)
    study = open_study(spec, args.storage)
    result = export_trial(study, spec, args.pick, Path(args.out), formats=tuple(args.format))
    print(result.summary())
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .ship import evaluate_export, format_evaluation

    report = evaluate_export(Path(args.export_dir), device=args.device, runtime=args.runtime, dtype=args.dtype,
                             channels_last=args.channels_last)
    print(json.dumps(report.as_dict(), indent=2) if args.format == "json" else format_evaluation(report))
    return 0


def _spec_parser(sub, name: str, help_text: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=help_text)
    p.add_argument("spec", help="study spec (YAML), e.g. studies/quickstart.yaml")
    _verbose(p)
    p.add_argument("--storage", metavar="URL", help="Optuna storage URL; overrides the spec's (share one study "
                   "between hosts with postgresql://...)")
    p.set_defaults(func=func)
    return p


def _verbose(parser: argparse.ArgumentParser) -> None:
    # also after the command (`moprune run spec.yaml -v`); SUPPRESS keeps the top-level flag's value when absent
    parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="more detail in moprune's messages (debug)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moprune", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Search per-layer structured pruning plans for accuracy, latency and energy measured on the "
                    "target device; inspect the Pareto front and export the model you choose.")
    from .version import __version__

    parser.add_argument("--version", action="version", version=f"moprune {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="more detail in moprune's messages (debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = _spec_parser(sub, "run", "create or resume the study and run trials until n_trials have finished", cmd_run)
    run.add_argument("--n-trials", type=int, metavar="N", help="total finished trials to reach (default: the spec's "
                     "search.n_trials)")
    run.add_argument("--timeout", type=float, metavar="S", help="stop starting new trials after S seconds")
    run.add_argument("--workers", type=int, default=1, metavar="K", help="worker processes on this host (default 1; "
                     "GPU i mod n for worker i, or a share of the CPU cores each)")

    _spec_parser(sub, "status", "trials by state, dense baseline, best accuracy, fastest feasible trial", cmd_status)

    pareto = _spec_parser(sub, "pareto", "print the feasible Pareto set (every trial with --all)", cmd_pareto)
    pareto.add_argument("--format", choices=["table", "csv", "json"], default="table")
    pareto.add_argument("--all", action="store_true", help="every trial, not only the feasible Pareto set")
    pareto.add_argument("--rank-by", metavar="WEIGHTS", help="sort by a weighted score, best first, e.g. "
                        "accuracy=1,latency_ms=0.5 (each value divided by the dense model's; signs from directions)")

    dash = _spec_parser(sub, "dashboard", "write the study's self-contained HTML report", cmd_dashboard)
    dash.add_argument("--out", metavar="PATH", help="output HTML file (default dashboards/<study>/index.html)")
    dash.add_argument("--pick", metavar="RULE", help="mark the trial an export pick rule chooses, e.g. "
                      "weighted:accuracy=1,latency_ms=0.5 (any rule of `moprune export --pick`)")

    export = _spec_parser(sub, "export", "export a chosen trial: config.yaml, pruning.json, weights.pt, metrics.json",
                          cmd_export)
    export.add_argument("--pick", required=True, metavar="RULE",
                        help="trial:N | knee | best:OBJECTIVE | OBJECTIVE@NAME<=VALUE (e.g. accuracy@latency_ms<=2.5) | "
                             "weighted:NAME=WEIGHT,... (e.g. weighted:accuracy=1,latency_ms=0.5)")
    export.add_argument("--out", required=True, metavar="DIR", help="export folder (created)")
    export.add_argument("--format", action="append", choices=["torch", "onnx"], default=None,
                        help="also write model.onnx with --format onnx (needs the onnx extra); repeatable")

    ev = sub.add_parser("evaluate", help="re-measure an exported model on its study's data split and device",
                        description="re-measure an exported model: accuracy, latency (paired against dense), "
                                    "MACs, params, energy where a meter exists, beside the recorded values")
    ev.add_argument("export_dir", metavar="DIR", help="a folder written by `moprune export`")
    _verbose(ev)
    ev.add_argument("--device", help="cpu | cuda | cuda:N (default: the study's device)")
    ev.add_argument("--runtime", choices=["eager", "compile", "onnxruntime"],
                    help="time the model (and dense) in this runtime instead of the study's measure.runtime")
    ev.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], help="instead of the study's measure.dtype")
    ev.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                    help="NHWC inputs and weights (default: the study's measure.channels_last)")
    ev.add_argument("--format", choices=["table", "json"], default="table")
    ev.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "export":
        args.format = ["torch", *(f for f in (args.format or []) if f != "torch")]
    if getattr(args, "n_trials", None) is not None and args.n_trials < 1:
        parser.error(f"--n-trials must be >= 1 (got {args.n_trials})")
    if getattr(args, "workers", 1) < 1:
        parser.error(f"--workers must be >= 1 (got {args.workers})")
    configure_logging(args.verbose)
    try:
        return args.func(args)
    except SpecError as exc:
        print(f"moprune: error: {exc}", file=sys.stderr)
        return 2
    except MopruneError as exc:
        print(f"moprune: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nmoprune: interrupted; finished trials are saved. Resume with: {_same_command(args)}",
              file=sys.stderr, flush=True)
        return 130


def _same_command(args: argparse.Namespace) -> str:
    """The command to run again (a resumed run re-queues the interrupted plans and continues to n_trials)."""
    from .search.storage import redact

    storage, workers = getattr(args, "storage", None), getattr(args, "workers", 1)
    words = ["moprune", args.command, getattr(args, "spec", "SPEC")]
    options = {"--storage": redact(storage) if storage else None, "--n-trials": getattr(args, "n_trials", None),
               "--workers": workers if workers > 1 else None}
    for flag, value in options.items():
        if value is not None:
            words += [flag, shlex.quote(str(value))]
    return " ".join(words)


if __name__ == "__main__":
    sys.exit(main())
