"""``python -m pathattr.experiments NAME [--quick] [--out DIR]``: run one reproduction."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

NAMES = ("ig", "neurons", "idg")


def main(argv: list[str] | None = None) -> int:
    """Run the reproduction and print where its report went; returns the exit code."""
    p = argparse.ArgumentParser(prog="python -m pathattr.experiments",
                                description="Reproduce a paper's claims; writes results/NAME/.")
    p.add_argument("name", choices=NAMES)
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test), seconds")
    p.add_argument("--out", type=Path, help="output directory (default: results/NAME)")
    args = p.parse_args(argv)
    out = args.out or Path("results") / args.name
    doc = importlib.import_module(f"pathattr.experiments.{args.name}").run(out, quick=args.quick)
    print((out / "README.md").read_text())
    print(f"wrote {', '.join(doc['files'])} to {out} in {doc['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
