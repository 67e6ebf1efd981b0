"""The repository's top-level conftest: registers the test tiers and parallel workers plugin (tests/_tiers.py) for
every way of running pytest here (`python -m pytest`, `.venv/bin/pytest`, a single file)."""

pytest_plugins = ["tests._tiers"]
