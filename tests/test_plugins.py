"""A user's own method, dataset, model (with its LRP canonizer) and attribution method, from
a plugin outside the package: through ``imports:`` in configs, ``list --import`` and an
installed entry point (docs/extending.md, docs/examples/my_plugin.py)."""

import shutil
import sys
from pathlib import Path

import pytest
import yaml

from subdistill import plugins
from subdistill.cli import main
from subdistill.data.augment import AUGMENTS
from subdistill.data.registry import DATASETS
from subdistill.data.subtask import PRESETS
from subdistill.errors import ConfigError
from subdistill.explain.attribution import ATTRIBUTIONS
from subdistill.explain.canonizers import CANONIZERS
from subdistill.methods import DISTILL_METHODS, method_class
from subdistill.models.registry import MODEL_PREFIXES, MODELS
from subdistill.subspace.basis import BASIS_METHODS
from subdistill.training.optim import OPTIMIZERS, SCHEDULES

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "my_plugin.py"
REGISTRIES = (DISTILL_METHODS, MODELS, MODEL_PREFIXES, DATASETS, PRESETS, AUGMENTS,
              BASIS_METHODS, OPTIMIZERS, SCHEDULES, ATTRIBUTIONS, CANONIZERS)


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """Entries a plugin registers (and its module) vanish after the test."""
    for registry in REGISTRIES:
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
    monkeypatch.setattr(sys, "modules", dict(sys.modules))
    monkeypatch.setattr(sys, "path", list(sys.path))
    plugin = tmp_path / "plugins" / "my_plugin.py"
    plugin.parent.mkdir()
    shutil.copy(EXAMPLE, plugin)
    return plugin


def _write(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_plugin_runs_distill_and_explain_from_the_cli(isolated, tmp_path, capsys):
    model = {"name": "tiny_net", "args": {"width": 8}}
    data = {"dataset": "stripes", "subtask": "straight"}
    common = {"imports": ["plugins/my_plugin.py"], "data": data}
    distill = _write(tmp_path / "distill.yaml", {
        **common, "teacher": model, "student": {"name": "tiny_net", "args": {"width": 4}},
        "method": {"name": "ramped-kd"}, "train": {"epochs": 2, "progress": False},
        "run_dir": str(tmp_path / "run")})
    assert main(["check", str(distill)]) == 0
    assert "method ramped-kd: KD whose weight grows" in capsys.readouterr().out
    assert main(["distill", str(distill)]) == 0
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert recorded["imports"] == ["plugins/my_plugin.py"]
    explain = _write(tmp_path / "explain.yaml", {
        **common, "teacher": model, "student": {"name": "tiny_net", "args": {"width": 4}},
        "students": {"ramped": str(tmp_path / "run")}, "images": 4,
        "attributions": ["lrp", "gradient-x-input"], "out_dir": str(tmp_path / "explain")})
    assert main(["explain", str(explain)]) == 0
    summary = (tmp_path / "explain" / "summary.md").read_text()
    assert "| lrp | ramped |" in summary and "| gradient-x-input | ramped |" in summary


def test_list_shows_a_plugins_entries(isolated, capsys):
    for kind, name in (("methods", "ramped-kd"), ("datasets", "stripes"),
                       ("models", "tiny_net"), ("attributions", "gradient-x-input"),
                       ("subtasks", "straight")):
        assert main(["list", kind, "--import", str(isolated)]) == 0
        assert name in capsys.readouterr().out
    assert main(["layers", "tiny_net", "--input-size", "1,8,8", "--import", str(isolated)]) == 0
    assert "bn" in capsys.readouterr().out


def test_an_installed_entry_point_is_found_by_name(isolated, monkeypatch):
    site = isolated.parent
    info = site / "my_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[subdistill.plugins]\nmine = my_plugin\n")
    sys.path.insert(0, str(site))
    monkeypatch.setattr(plugins, "_loaded", False)
    assert method_class("ramped-kd").name == "ramped-kd"  # the first lookup loads plugins


def test_plugin_errors_are_one_line(isolated, tmp_path, capsys):
    bad = tmp_path / "plugins" / "broken.py"
    bad.write_text("raise ValueError('no')\n")
    for imports, message in ((["plugins/broken.py"], "failed to import: ValueError: no"),
                             (["plugins/missing.py"], "does not exist"),
                             (["no_such_module_here"], "cannot import module"),
                             ("my_plugin", "expected a list")):
        config = _write(tmp_path / "bad.yaml", {"imports": imports})
        assert main(["check", str(config)]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    with pytest.raises(ConfigError, match="already registered"):
        plugins.import_plugins([str(isolated)])
        shutil.copy(isolated, tmp_path / "plugins" / "again.py")
        plugins.import_plugins(["plugins/again.py"], base=tmp_path)
