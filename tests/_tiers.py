"""Test tiers and parallel workers: a pytest plugin, registered by the repository's top-level conftest.py.

Tiers are markers (registered in pyproject.toml), set here from what each test uses:

- ``e2e``: an Adjutant connected to the Discord stand-in (the ``discord_standin`` fixture, which ``start_adjutant``
  uses, or a ``DiscordStandIn`` of the test's own), or a bot in its own process (``start_standalone``,
  ``subprocess_env``, or a call with ``"-m", "adjutant"``), found in the test, its nested functions and the functions
  of its own module that it calls; a test file may also mark it so;
- ``slurm``: the real single-node Slurm (the ``slurm`` fixture of tests/cogs/test_slurm.py);
- ``ray``: a real Ray head (tests/ray/, and each test that runs those through ``run_ray_tests``, which also gets the
  900 s that function allows its pytest in the namespace);
- ``slow``: more than about 10 s of work on its own, without a bot (marked in its file);
- ``fast``: none of these; the inner loop is ``python -m pytest -m fast``.

Parallel workers: run without paths (the whole suite, or a tier of it with ``-m``) and without ``-n``, the tests run
in ``WORKERS`` pytest-xdist workers with ``--dist loadgroup``. Given paths (a file, a test), they run in this process,
where starting workers would cost more than it saves (add ``-n 4`` to ask for workers). ``-n0`` or ``-p no:xdist``
runs everything in this process. Tests mostly wait (on the stand-ins, subprocesses, Slurm), so more workers than cores
pay. Each worker is a process of its own, with its own stand-ins (each on a port the system picks), ``tmp_path`` and
state folders. What is global to the machine runs in one worker, in one ``xdist_group``: the real Slurm (one
controller on ports 6817/6818, which one test stops and restarts). Each Ray head runs in a network namespace of its
own, but the Ray tests share a group too, so that two heads never start at once (a start takes both cores for
seconds, and a head that does not answer within a minute fails its test).
"""

from __future__ import annotations

import os
import types
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

WORKERS = 4  # measured on the 2-core CI machine: README, "Run the tests"

NOT_FAST = ("e2e", "slurm", "ray", "slow")

HERE = Path(__file__).resolve().parent
RAY_DIR = HERE / "ray"  # collected only inside the namespace that tests/test_ray.py makes
BOT_HELPERS = {  # names whose use means a bot connected to a stand-in, or a bot process
    "DiscordStandIn",  # a stand-in of the test's own, for a bot in this process or in its own
    "start_standalone",  # tests/conftest.py: `python -m adjutant` connected to a stand-in
    "subprocess_env",  # tests/conftest.py: the environment of such a process
}
BOT_PROCESS = "-m adjutant"  # recorded for a function whose constants hold both "-m" and "adjutant"
RAY_RUNNER = "run_ray_tests"  # tests/test_ray.py: runs a tests/ray file against a real Ray head
RAY_RUNNER_TIMEOUT = 900  # what run_ray_tests allows its pytest in the namespace (the default 120 s is too short)


@pytest.hookimpl(wrapper=True)
def pytest_cmdline_main(config: pytest.Config) -> Generator[None, object, object]:
    """Before xdist reads its options: WORKERS workers for the whole suite or a tier; an explicit -n wins."""
    if (
        config.pluginmanager.hasplugin("xdist")
        and config.getoption("numprocesses", None) is None
        and not config.getoption("tx", None)
        and config.args_source == pytest.Config.ArgsSource.TESTPATHS  # no paths given
        and "PYTEST_XDIST_WORKER" not in os.environ
        and not config.getoption("usepdb", False)
    ):
        config.option.numprocesses = WORKERS
    if config.getoption("numprocesses", None) and config.getoption("dist", "no") == "no":
        config.option.dist = "loadgroup"  # each xdist_group in one worker
    return (yield)


@pytest.hookimpl(optionalhook=True)  # an xdist hook, in the controller, for each worker it starts
def pytest_configure_node(node: Any) -> None:
    node.workerinput["adjutant_dist"] = node.config.option.dist


def pytest_configure(config: pytest.Config) -> None:
    """A worker parses the command line again, where --dist is not (the controller chose it above): tell it, so that
    it names the tests of each xdist_group for the controller's load-group scheduler."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and workerinput.get("adjutant_dist") == "loadgroup":
        config.option.loadgroup = True


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> Generator[None, None, None]:
    """Marks each test's tiers before the other plugins look (xdist reads the groups); afterwards, in a worker of a
    load-group run, names the tests of each group where xdist could not."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        names = _names_used(item)
        if "discord_standin" in fixtures or names & {*BOT_HELPERS, BOT_PROCESS}:
            item.add_marker(pytest.mark.e2e)
        if "slurm" in fixtures:
            item.add_marker(pytest.mark.slurm)
        if item.get_closest_marker("slurm") is not None:
            item.add_marker(pytest.mark.xdist_group("slurm"))
        if RAY_DIR in item.path.parents or RAY_RUNNER in names:
            item.add_marker(pytest.mark.ray)
        if item.get_closest_marker("ray") is not None:
            item.add_marker(pytest.mark.xdist_group("ray"))
            if RAY_RUNNER in names and item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(RAY_RUNNER_TIMEOUT))
        if not any(item.get_closest_marker(tier) for tier in NOT_FAST):
            item.add_marker(pytest.mark.fast)
    yield
    if getattr(config.option, "loadgroup", False):
        for item in items:
            _name_group(item)


def _names_used(item: pytest.Item) -> set[str]:
    """The global names a test function uses, with those of its nested functions and of the functions of its own
    module that it calls (transitively); BOT_PROCESS if one of them holds the constants "-m" and "adjutant"."""
    function = getattr(item, "function", None)
    module = getattr(function, "__module__", None)
    namespace = getattr(function, "__globals__", {})
    names: set[str] = set()
    seen: set[int] = set()
    pending = [getattr(function, "__code__", None)]
    while pending:
        code = pending.pop()
        if not isinstance(code, types.CodeType) or id(code) in seen:
            continue
        seen.add(id(code))
        names.update(code.co_names)
        if {"-m", "adjutant"} <= set(code.co_consts):
            names.add(BOT_PROCESS)
        pending.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
        for name in code.co_names:
            helper = namespace.get(name)
            if isinstance(helper, types.FunctionType) and helper.__module__ == module:
                pending.append(helper.__code__)
    return names


def _name_group(item: pytest.Item) -> None:
    """A test of an xdist_group is named "<nodeid>@<group>": by that name the controller's scheduler sends all tests
    of a group to one worker. pytest-xdist 3.8 sets ``Item._nodeid``, which pytest 9.2 no longer reads
    (``Item.nodeid`` is ``str(Item._id)``), so its groups would be spread over the workers: name them here."""
    marks = item.iter_markers("xdist_group")
    groups = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in marks})
    if not groups or "@" in item.nodeid.rpartition("]")[2]:
        return  # no group, or xdist named it
    from _pytest.nodeid import coerce_node_id  # pytest >= 9.2

    item._id = coerce_node_id(f"{item.nodeid}@{'_'.join(groups)}")
