"""``python -m benchmarks ig|deeplift|conductance|methods|run|bert|sequence|metrics|long|paths|
idg-coarse|circuits|all [out_dir]``."""

import importlib
import sys
from pathlib import Path

NAMES = {"ig": "bench_ig", "deeplift": "bench_deeplift", "conductance": "bench_conductance",
         "methods": "bench_methods", "run": "bench_run", "bert": "bench_bert",
         "sequence": "bench_sequence", "metrics": "bench_metrics", "long": "bench_long",
         "paths": "bench_paths", "idg-coarse": "bench_idg_coarse",
         "circuits": "bench_circuits"}

if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("results/bench")
    if which != "all" and which not in NAMES:
        sys.exit(f"unknown benchmark {which!r}; expected one of {', '.join(NAMES)} or all")
    for name in NAMES if which == "all" else [which]:
        importlib.import_module(f"benchmarks.{NAMES[name]}").run(out)
