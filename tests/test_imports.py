"""The package's shape: no import cycle between its parts, and a lazy top level."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from house import SRC, find_cycles, import_graph  # noqa: E402


def test_no_import_cycle_between_the_parts_of_the_package():
    graph = import_graph(SRC)
    assert {"bench", "explain", "training", "data", "models", "methods"} <= set(graph)
    assert "explain" in graph["bench"]  # the one allowed direction
    assert "bench" not in graph["explain"]
    assert find_cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_hidden_imports_inside_functions_count(tmp_path):
    package = tmp_path / "pkg"
    for part in ("one", "two"):
        (package / part).mkdir(parents=True)
        (package / part / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "one" / "a.py").write_text("from ..two import b\n")
    (package / "two" / "b.py").write_text("def f():\n    from ..one import a\n")
    assert find_cycles(import_graph(package)) == [["one", "two", "one"]]


def test_importing_the_package_and_the_cli_loads_no_torch():
    code = ("import sys, subdistill, subdistill.cli; "
            "print(sorted(m for m in ('torch', 'torchvision', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_lazy_names_resolve_to_their_modules():
    import subdistill
    from subdistill.training.trainer import distill

    assert subdistill.distill is distill
    assert set(subdistill.__all__) <= set(dir(subdistill)) | {"__version__"}
