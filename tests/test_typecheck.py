"""mypy sees every cog: a misspelt attribute planted in a cog fails the same check CI runs.

CI runs ``.venv/bin/mypy`` with no arguments from the repository root, so the configuration is pyproject's
``[tool.mypy]``. The cogs live in the top-level ``cogs/`` folder and are imported as ``adjutant.cogs`` (a symlink
``adjutant/cogs -> ../cogs`` lets mypy resolve that name). If mypy could not resolve ``adjutant.cogs.*``, a cog
that subclasses another cog module's class would subclass ``Any`` and any attribute on it would pass.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# A cog module that builds on another cog module's class, with a misspelt attribute (Greeting has `settings`)
# and an import of a first-party module that does not exist.
PLANTED = '''\
"""Planted by tests/test_typecheck.py."""

import adjutant.cogs._no_such_module  # noqa: F401
from adjutant.cogs.greeting import Greeting


class Planted(Greeting):
    def misspelt(self) -> object:
        return self.setings
'''

pytestmark = pytest.mark.slow  # one full mypy run without a cache (as in CI's fresh clone): about 15-20 s


@pytest.mark.timeout(600)
def test_mypy_checks_every_cog_and_fails_on_a_misspelt_attribute(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copy(ROOT / "pyproject.toml", tree)
    shutil.copytree(ROOT / "adjutant", tree / "adjutant", symlinks=True, ignore=skip)
    shutil.copytree(ROOT / "cogs", tree / "cogs", ignore=skip)
    assert (tree / "adjutant" / "cogs").resolve() == (tree / "cogs").resolve(), "adjutant/cogs must point at cogs/"
    (tree / "cogs" / "_planted.py").write_text(PLANTED)
    sources = [p for p in (tree / "adjutant").rglob("*.py") if "cogs" not in p.relative_to(tree / "adjutant").parts]
    sources += list((tree / "cogs").glob("*.py"))

    # Exactly what .ci/run's mypy step runs (.venv/bin/mypy is this interpreter's mypy), from the tree's root.
    result = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=tree, capture_output=True, text=True, timeout=540, check=False
    )
    out = result.stdout + result.stderr

    assert result.returncode == 1, out
    assert re.search(r'^adjutant/cogs/_planted\.py:9: error: "Planted" has no attribute "setings"', out, re.M), out
    missing = r'^adjutant/cogs/_planted\.py:3: error: Cannot find .* "adjutant\.cogs\._no_such_module"'
    assert re.search(missing, out, re.M), out
    assert "found twice" not in out, out  # each cog is checked once, as adjutant.cogs.<name>
    assert f"checked {len(sources)} source files" in out, (len(sources), out)
