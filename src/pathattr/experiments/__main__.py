"""``python -m pathattr.experiments NAME [--quick] [--out DIR] [--data D] [--inputs N]``: run one
reproduction (``--data`` and ``--inputs`` for ``idg`` only)."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

NAMES = ("ig", "neurons", "idg", "molecules", "translation")


def main(argv: list[str] | None = None) -> int:
    """Run the reproduction and print where its report went; returns the exit code."""
    p = argparse.ArgumentParser(prog="python -m pathattr.experiments",
                                description="Reproduce a paper's claims; writes results/NAME/.")
    p.add_argument("name", choices=NAMES)
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test), seconds")
    p.add_argument("--out", type=Path, help="output directory (default: results/NAME, "
                   "results/idg-DATA for idg on held-out data)")
    p.add_argument("--data", default="photos", choices=("photos", "digits", "mnist1d"),
                   help="idg only: the bundled photos (default), or held-out digits / MNIST-1D")
    p.add_argument("--inputs", type=int, help="idg on held-out data: how many (default 300)")
    args = p.parse_args(argv)
    extra = {}
    if args.name == "idg":
        extra = {"data": args.data, "inputs": args.inputs}
    elif args.data != "photos" or args.inputs is not None:
        p.error(f"--data and --inputs apply to idg only, not {args.name}")
    default = args.name if args.data == "photos" else f"{args.name}-{args.data}"
    out = args.out or Path("results") / default
    try:
        doc = importlib.import_module(f"pathattr.experiments.{args.name}").run(
            out, quick=args.quick, **extra)
    except ValueError as e:  # a bad --inputs
        p.error(str(e).replace("inputs must", "--inputs must"))
    print((out / "README.md").read_text())
    print(f"wrote {', '.join(doc['files'])} to {out} in {doc['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
