"""Benchmark of the code's shape: function sizes, complexity, import cycles and start-up time.

Measures, over ``src/subdistill``: the longest functions (lines from ``def`` to the last line
of the body), the most complex ones (McCabe cyclomatic complexity as ruff's C901 computes it),
import cycles between the package's top-level parts (every import counted, those inside
functions too), and the wall time of ``subdistill --help`` and of ``import subdistill`` in a
fresh interpreter (median of ``--repeats`` runs, one thread).

    python benchmarks/house.py --out benchmarks/results/house.json
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "subdistill"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from subspace_fit import machine_info  # noqa: E402


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """Absolute names of the modules an import statement of ``module`` refers to."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level == 0:
        base = node.module or ""
    else:
        parts = module.split(".")
        parts = parts if is_package else parts[:-1]
        parts = parts[: len(parts) - node.level + 1]
        base = ".".join(parts + ([node.module] if node.module else []))
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """Edges between the top-level parts of the package (``bench``, ``config``, ...): part A
    points to B when a module of A imports one of B, anywhere in the file. The package root
    (``subdistill/__init__.py``) is left out: it only re-exports."""
    package = src.name
    graph: dict[str, set[str]] = {}
    for path in sorted(src.rglob("*.py")):
        relative = path.relative_to(src.parent).with_suffix("")
        is_package = relative.name == "__init__"
        module = ".".join(relative.parts[:-1] if is_package else relative.parts)
        if module == package:
            continue
        part = module.split(".")[1]
        edges = graph.setdefault(part, set())
        for node in ast.walk(ast.parse(path.read_text())):
            for name in _imported(node, module, is_package):
                pieces = name.split(".")
                if pieces[0] == package and len(pieces) > 1 and pieces[1] != part:
                    if (src / pieces[1]).is_dir() or (src / f"{pieces[1]}.py").is_file():
                        edges.add(pieces[1])
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path that returns to its start) per strongly connected group of
    parts that import each other, found by depth-first search."""
    cycles, done = [], set()
    for start in sorted(graph):
        if start in done:
            continue
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph.get(node, ())):
                if nxt == start:
                    cycles.append(path + [start])
                    done.update(path)
                    stack = []
                    break
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
        done.add(start)
    return cycles


def function_lengths() -> list[tuple[int, str]]:
    """(lines, qualified name) of every function and method in the package, longest first."""
    sizes = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                sizes.append((node.end_lineno - start + 1,
                              f"{path.relative_to(SRC.parent)}::{node.name}"))
    return sorted(sizes, reverse=True)


def complexities() -> list[tuple[int, str]]:
    """(complexity, location) of every function, most complex first, from ruff's C901."""
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    result = subprocess.run(
        [ruff, "check", str(SRC), "--select", "C901", "--config",
         "lint.mccabe.max-complexity=0", "--output-format", "concise", "--no-cache"],
        capture_output=True, text=True, cwd=ROOT)
    found = re.findall(r"^(\S+?):\d+:\d+: C901 `(.+?)` is too complex \((\d+) > 0\)",
                       result.stdout, flags=re.M)
    return sorted(((int(c), f"{(ROOT / p).relative_to(SRC.parent)}::{name}")
                   for p, name, c in found), reverse=True)


def startup_seconds(argv: list[str], repeats: int) -> float:
    """Median wall time of running ``argv`` in a fresh process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    lengths, complexity = function_lengths(), complexities()
    cycles = find_cycles(import_graph(SRC))
    cli = shutil.which("subdistill") or str(Path(sys.executable).parent / "subdistill")
    figures = {
        "machine": machine_info(),
        "functions": len(lengths),
        "longest": [{"lines": n, "function": f} for n, f in lengths[:5]],
        "over_60_lines": sum(n > 60 for n, _ in lengths),
        "median_lines": statistics.median(n for n, _ in lengths),
        "most_complex": [{"complexity": c, "function": f} for c, f in complexity[:5]],
        "over_complexity_10": sum(c > 10 for c, _ in complexity),
        "import_cycles": [" -> ".join(c) for c in cycles],
        "help_seconds": startup_seconds([cli, "--help"], args.repeats),
        "import_seconds": startup_seconds([sys.executable, "-c", "import subdistill"],
                                          args.repeats),
    }
    print(json.dumps(figures, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
