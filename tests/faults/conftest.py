"""Fault tests: each injects one fault against the stand-ins (or the real Slurm, the real disk) and checks
that Adjutant keeps its promise. They share the cogs' fixtures."""

from tests.cogs.conftest import out_dir  # noqa: F401 (fixture)
