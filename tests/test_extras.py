"""Optional dependencies: without an extra's package, the features that need it fail with a
one-line error naming the extra, and the rest of the library works."""

import subprocess
import sys

import pytest

from subdistill.errors import ConfigError
from subdistill.extras import require

WITHOUT = ("import sys; sys.modules[{name!r}] = None; from subdistill.cli import main; "
           "sys.exit(main({argv!r}))")


def _cli_without(package, argv):
    code = WITHOUT.format(name=package, argv=argv)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("package", ["zennit", "captum"])
def test_heatmaps_without_the_explain_extra_name_it(package):
    done = _cli_without(package, ["list", "attributions"])
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: {'LRP heatmaps' if package == 'zennit' else 'heatmaps (LRP, IG, SVS)'} needs "
        f"{package}, which is not installed: pip install 'subdistill[explain]'")


def test_the_rest_works_without_the_explain_extra():
    done = _cli_without("zennit", ["methods"])
    assert done.returncode == 0 and "subdistill" in done.stdout
    code = "import sys; sys.modules['zennit'] = None; import subdistill.bench.runner"
    assert subprocess.run([sys.executable, "-c", code], timeout=300).returncode == 0


def test_require_names_the_package_and_the_extra():
    with pytest.raises(ConfigError, match=r"^x needs nope, which is not installed: "
                                          r"pip install 'subdistill\[extra\]'$"):
        require("nope.sub", "extra", "x")
