"""``pathattr run`` (a whole dataset, resumable, locally or on Ray) and ``pathattr summarize``.

``register(sub, common)`` adds both subcommands to ``cli.build_parser``'s subparsers; the work
itself is ``pathattr.run.run`` and ``pathattr.run.summarize``."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

RUN_EXAMPLES = """examples:
  pathattr run --model digits-cnn --data digits.npz --method ig,deeplift --out results/digits
  pathattr run --data photos/ --method ig --layer _blocks.15 --steps 50 --out results/photos
  pathattr run --data photos/ --out results/photos --engine ray --address ray://head:10001
  (run the same command again to resume an interrupted run; then: pathattr summarize RESULTS)"""

SUMMARIZE_EXAMPLES = """example:
  pathattr summarize results/digits --sample 8 --top 5"""


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``run`` (with the ``common`` options: --model, --weights, --target, --steps, --out,
    --quiet) and ``summarize`` to ``sub``; each sets ``run`` to its command function."""
    from . import positive_int

    def add(name: str, help: str, epilog: str, parents: list) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, parents=parents, epilog=epilog,
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    p = add("run", "Attribute every item of a dataset (a directory of images or an NPZ of model "
            "inputs) into a resumable results store; kill and rerun it at will.",
            RUN_EXAMPLES, [common])
    p.add_argument("--data", required=True, metavar="DIR|NPZ",
                   help="image directory (recursive), or .npz with x[, y] or one array per item")
    p.add_argument("--method", default="ig", metavar="M[,M...]",
                   help="comma-separated methods or 'all' (default: %(default)s)")
    p.add_argument("--layer", metavar="NAME[,NAME...]",
                   help="also Neuron IG (total conductance) of each channel of these layers")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: in this process; ray: one model per Ray actor (default: "
                        "%(default)s)")
    p.add_argument("--address",
                   help="Ray cluster address: 'auto' (the running one), 'local' (a new private "
                        "one with --workers CPUs), host:port or ray://host:port (default: "
                        "RAY_ADDRESS, else a cluster started with `ray start` here, else a new "
                        "local one)")
    p.add_argument("--workers", type=positive_int, metavar="N",
                   help="Ray actors (default: one per CPU of the cluster)")
    p.add_argument("--batch-size", type=positive_int, metavar="N",
                   help="items per batch and per index transaction (default: enough batches "
                        "that a kill loses at most 1/20 of the run, at most 16 items each; "
                        "a resumed run keeps its own)")
    p.set_defaults(run=run_command)

    p = add("summarize", "Aggregate a results store: mean |delta|, per-class counts, top "
            "features or channels, failures; writes summary.json and report.html into it.",
            SUMMARIZE_EXAMPLES, [])
    p.add_argument("results", type=Path, metavar="RESULTS", help="a `pathattr run` --out")
    p.add_argument("--sample", type=positive_int, default=4, metavar="N",
                   help="items drawn in the report (default: %(default)s)")
    p.add_argument("--top", type=positive_int, default=10, metavar="N",
                   help="features listed per method (default: %(default)s)")
    p.add_argument("--model", help="draw the sample over its inputs as this model sees them "
                   "(default: the run's model if it is built in; code named in a results folder "
                   "is never run)")
    p.add_argument("--weights", metavar="FILE", help="state_dict for --model module:factory")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no tables: only where the report is")
    p.set_defaults(run=summarize_command)


def run_command(args: argparse.Namespace) -> int:
    """Run or resume; returns 1 if some item failed (recorded in the store), else 0."""
    from ..runs import run

    if args.engine == "local" and (args.address or args.workers):
        from . import UsageError

        raise UsageError("--address, --workers: only with --engine ray")
    with warnings.catch_warnings():  # the recomputed results are reported below, in one line
        warnings.simplefilter("ignore")
        result = run(args.model, args.data, args.method, args.out,
                     layer=args.layer.split(",") if args.layer else None, steps=args.steps,
                     target=args.target, weights=args.weights, engine=args.engine,
                     address=args.address, workers=args.workers,
                     batch_size=args.batch_size or "auto",
                     quiet=args.quiet)
    print(f"(item, method) results: {result.done} done, {result.failed} failed, "
          f"{result.skipped} already in "
          f"{result.out} ({result.seconds:.1f} s); see: pathattr summarize {result.out}")
    if result.recomputed:
        print(f"pathattr: warning: {len(result.recomputed)} stored result(s) failed "
              f"verification and were recomputed", file=sys.stderr)
    if result.failed:
        print(f"pathattr: warning: {result.failed} item(s) failed; reasons: pathattr summarize "
              f"{result.out}", file=sys.stderr)
    return 1 if result.failed else 0


def summarize_command(args: argparse.Namespace) -> int:
    """Print the aggregate tables and write the report; returns 0."""
    from ..runs import summarize
    from ..store import BadStore
    from . import UsageError

    try:
        summary = summarize(args.results, args.sample, args.top, args.model, args.weights)
    except (FileNotFoundError, BadStore) as e:
        raise UsageError(f"RESULTS: {e}") from None
    if not args.quiet:
        print("\n\n".join(t.text() for t in summary.tables if t.rows))
    print(f"report: {summary.report}")
    return 0
