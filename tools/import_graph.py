"""The import graph of ``src/pathattr``: its cycles and its back-arrows (the library importing
the command line or the reproductions), counting imports inside functions too.

    python tools/import_graph.py     # prints both; exit 1 when there is either
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src" / "pathattr"
FRONT = ("pathattr.cli", "pathattr.commands", "pathattr.experiments")


def modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = list(p.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = p
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The pathattr modules ``name`` imports anywhere (``TYPE_CHECKING`` blocks excepted)."""
    found: set[str] = set()
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    skipped = {id(n) for n in ast.walk(ast.parse(path.read_text()))
               if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING"
               for n in ast.walk(n)}
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom) or id(node) in skipped:
            continue
        base = node.module or ""
        if node.level:
            up = package[:len(package) - (node.level - 1)]
            base = ".".join(up + ([node.module] if node.module else []))
        if not base.startswith("pathattr"):
            continue
        subs = {f"{base}.{a.name}" for a in node.names} & set(known)
        found |= subs if len(subs) == len(node.names) else {base} | subs
    return (found & set(known)) - {name}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def main() -> int:
    known = modules()
    edges = defaultdict(set, {m: imports(m, p, known) for m, p in known.items()})
    found = cycles(edges)
    back = sorted((m, t) for m in known if not m.startswith(FRONT)
                  for t in edges[m] if t.startswith(FRONT))
    print(f"{len(known)} modules, {sum(map(len, edges.values()))} import edges")
    print(f"cycles: {found or 'none'}")
    print(f"library -> command line / reproductions: {back or 'none'}")
    return 1 if found or back else 0


if __name__ == "__main__":
    raise SystemExit(main())
