"""``pathattr evaluate --data DIR|NPZ`` (attribute into a store with the dataset runner, then
evaluate) and ``pathattr evaluate --results STORE``."""

from __future__ import annotations

import argparse
import sys


def evaluate_store(args: argparse.Namespace) -> int:
    """Run the store (``--data``) when asked, then ``runs.evaluate_results`` on it; prints the
    tables. Returns the exit code."""
    from .. import runs

    if args.data is not None:
        done = runs.run(args.model, args.data, args.method, args.out,
                        steps=args.steps, target=args.target, weights=args.weights,
                        quiet=args.quiet)
        results, model, weights = args.out, None, None
        failed = done.failed
    else:
        # the run's own model unless one is named here (never code from the results folder)
        results, failed = args.results, 0
        named = args.model != "efficientnet-lite0" or args.weights is not None
        model, weights = (args.model, args.weights) if named else (None, None)
    evaluation, page = runs.evaluate_results(results, args.metrics, args.curve_steps,
                                             args.controls, model, weights, args.quiet)
    if not args.quiet:
        print("\n".join([f"== {len(evaluation.inputs)} items",
                         *(t.text() for t in evaluation.tables())]))
    print(f"report: {page}")
    if failed:
        from ..errors import printable
        from ..store import Store

        with Store(results) as store:
            rows = store.rows("status = 'failed'")
        names = "; ".join(f"{r['key']} ({r['method']}): {r['error']}" for r in rows[:3])
        print(printable(f"pathattr: warning: {failed} item(s) failed: {names}"
                        f"{'; ...' if len(rows) > 3 else ''} (all: pathattr summarize "
                        f"{results})", keep=""), file=sys.stderr)
    return 1 if failed else 0
