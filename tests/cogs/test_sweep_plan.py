"""The launch service's sweep doors on their own (no bot): a W&B sweep configuration is a search plan (method, space,
trials or the cap, parallelism, seed, worst case), the JSON-lists shorthand stays today's grid, ``$agents`` checks
the sweep's path and its count; the same gate, rights and admission as every launch."""

from __future__ import annotations

from pathlib import Path

import pytest

from adjutant.approvals import ApprovalStore
from adjutant.jobs import JobStore
from adjutant.launching import (
    AGENT_SCRIPT,
    Launching,
    Refused,
    SearchPlan,
    SweepPlan,
    take_search_options,
)
from adjutant.scheduler import Scheduler
from adjutant.settings import Settings
from tests.test_launching import ALICE, BOB, ROUTES, asker
from tests.test_scheduler import FakeLauncher

BAYES = """```yaml
method: bayes
metric: {name: loss, goal: minimize}
run_cap: 12
parameters:
  x: {min: 0.0, max: 1.0}
  opt: {values: [adam, sgd]}
```"""


def make(tmp_path: Path, **env: str) -> tuple[Launching, Settings, JobStore, ApprovalStore]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    (tmp_path / "projects.toml").write_text(ROUTES)
    settings = Settings.from_env(
        {"ADJUTANT_CONFIG": str(tmp_path / "projects.toml"), "ADJUTANT_STATE_DIR": str(tmp_path / "state"), **env}
    )
    path = tmp_path / "adjutant.sqlite3"
    jobs, approvals = JobStore(path), ApprovalStore(path)
    scheduler = Scheduler(
        jobs, lambda backend: FakeLauncher(), log_dir=tmp_path / "logs", max_concurrent=3, cancel_grace_seconds=30,
        environment=lambda job: {},
    )  # fmt: skip
    launching = Launching(settings, scheduler, approvals, quota_of=lambda member: None, watcher_of=lambda p, e: None)
    return launching, settings, jobs, approvals


@pytest.fixture
def world(tmp_path: Path):
    launching, settings, jobs, approvals = make(tmp_path)
    yield launching, settings
    jobs.close()
    approvals.close()


def test_search_options_are_taken_wherever_they_are_among_the_options() -> None:
    options, rest = take_search_options("--gpus 2 --parallel 3 --seed=42 --time 1h ```yaml\nmethod: grid\n```")
    assert (options.parallel, options.seed) == (3, 42)
    assert rest == "--gpus 2 --time 1h ```yaml\nmethod: grid\n```"
    assert take_search_options('{"lr": [1, 2]}') == (take_search_options("")[0], '{"lr": [1, 2]}')
    for bad, said in (("--parallel 0 {}", "--parallel must be"), ("--seed x {}", "--seed must be"),
                      ("--parallel", "--parallel needs a value")):  # fmt: skip
        with pytest.raises(ValueError, match=said):
            take_search_options(bad)


async def test_a_wandb_configuration_is_a_search_plan(world) -> None:
    launching, settings = world
    plan = await launching.sweep(asker(settings, BOB, "general"), f"--parallel 2 --seed 7 --time 30m {BAYES}", 1)
    assert isinstance(plan, SearchPlan), plan
    assert (plan.kind, plan.method, plan.trials) == ("search", "bayes", 12)
    assert (plan.parallel, plan.seed, plan.gpus) == (2, 7, 1)
    assert plan.gpu_hours == 12 * 1 * 0.5, "trials x GPUs x time limit"
    assert plan.script.endswith("run.sh") and plan.route.channel == "general" and plan.capped_by is None
    assert plan.config is not None and plan.config.metric is not None and plan.config.metric.name == "loss"
    assert plan.where == "mnist"


async def test_an_attached_file_and_the_default_parallelism_and_a_random_seed(world) -> None:
    launching, settings = world
    text = "method: random\nrun_cap: 6\nparameters:\n  lr: {distribution: log_uniform_values, min: 0.0001, max: 0.1}\n"
    plan = await launching.sweep(asker(settings, BOB, "general"), "", attached=text)
    assert isinstance(plan, SearchPlan) and plan.method == "random" and plan.trials == 6
    assert plan.parallel == 3, "what the queue can run (max_concurrent 3)"
    assert plan.seed is not None and 0 <= plan.seed < 2**31
    both = await launching.sweep(asker(settings, BOB, "general"), '{"lr": [1, 2]}', attached=text)
    assert isinstance(both, Refused) and "once" in both.text


async def test_no_run_cap_is_capped_by_max_sweep_and_said(world) -> None:
    launching, settings = world
    text = '{"method": "random", "parameters": {"x": {"min": 0, "max": 1}}}'
    plan = await launching.sweep(asker(settings, BOB, "general"), text)
    assert isinstance(plan, SearchPlan) and plan.trials == settings.max_sweep == 16
    assert plan.capped_by is not None and "ADJUTANT_MAX_SWEEP" in plan.capped_by and "run_cap" in plan.capped_by
    assert plan.config is not None and plan.config.run_cap == 16 and plan.config.raw["run_cap"] == 16
    grid = '{"method": "grid", "parameters": {"a": {"values": [1, 2, 3, 4, 5]}, "b": {"values": [1, 2, 3, 4]}}}'
    refused = await launching.sweep(asker(settings, BOB, "general"), grid)
    assert isinstance(refused, Refused) and "20 cells" in refused.text and "limit is 16" in refused.text


async def test_the_shorthand_stays_a_grid_of_jobs_unless_asked_to_search(world) -> None:
    launching, settings = world
    bob = asker(settings, BOB, "general")
    today = await launching.sweep(bob, '{"lr": [0.1, 0.01], "bs": [32, 64]}')
    assert isinstance(today, SweepPlan) and len(today.combos) == 4
    search = await launching.sweep(bob, '--parallel 2 {"lr": [0.1, 0.01], "bs": [32, 64]}')
    assert isinstance(search, SearchPlan) and search.method == "grid" and search.trials == 4 and search.parallel == 2


async def test_bad_configurations_and_rights_are_refused_with_a_sentence(world) -> None:
    launching, settings = world
    bad = await launching.sweep(asker(settings, BOB, "general"), "method: bayes\nparameters:\n  x: {min: 0, max: 1}\n")
    assert isinstance(bad, Refused) and bad.text.startswith("Not queued:") and "metric" in bad.text
    alice = await launching.sweep(asker(settings, ALICE, "general"), BAYES)
    assert isinstance(alice, Refused) and "not allowed" in alice.text


async def test_a_sweep_that_needs_approval_is_refused_with_what_to_do(tmp_path: Path) -> None:
    launching, settings, jobs, approvals = make(tmp_path, ADJUTANT_APPROVAL_JOBS="4")
    try:
        plan = await launching.sweep(asker(settings, BOB, "general"), BAYES)
        assert isinstance(plan, Refused) and "needs approval" in plan.text and "ask an approver" in plan.text
    finally:
        jobs.close()
        approvals.close()


async def test_agents_take_a_sweep_path_a_count_and_options(tmp_path: Path) -> None:
    launching, settings, jobs, approvals = make(tmp_path, WANDB_ENTITY="team")
    try:
        bob = asker(settings, BOB, "general")
        plan = await launching.agents(bob, "team/mnist/ab12cd34", "2 --gpus 1 --time 1h")
        assert isinstance(plan, SearchPlan), plan
        assert (plan.kind, plan.wandb_sweep, plan.parallel, plan.gpus) == ("agents", "team/mnist/ab12cd34", 2, 1)
        assert plan.script == str(AGENT_SCRIPT)
        assert plan.trials == settings.max_sweep == 16, "at most ADJUTANT_MAX_SWEEP agent jobs in all"
        assert plan.gpu_hours == 16 * 1 * 1.0, "the whole pool's worst case: every agent job it may make"
        assert plan.warning is not None and plan.warning.startswith("At most 16 agent jobs in all (ADJUTANT_MAX_SWEEP)")
        bare = await launching.agents(bob, "ab12cd34", "")
        assert isinstance(bare, SearchPlan) and bare.wandb_sweep == "team/mnist/ab12cd34", "a bare id: the route's"
        for text, said in (("0", "number of agents"), ("2 extra", "unexpected"), ("--gpus x", "--gpus")):
            refused = await launching.agents(bob, "team/mnist/ab12cd34", text)
            assert isinstance(refused, Refused) and said in refused.text, (text, refused)
        wrong = await launching.agents(bob, "not a sweep!", "")
        assert isinstance(wrong, Refused) and "not a W&B sweep id" in wrong.text
        alice = await launching.agents(asker(settings, ALICE, "general"), "team/mnist/ab12cd34", "")
        assert isinstance(alice, Refused) and "not allowed" in alice.text
    finally:
        jobs.close()
        approvals.close()


async def test_agents_refuse_a_sweep_outside_the_channels_project(tmp_path: Path) -> None:
    """The bot's W&B key may read other entities' and projects' sweeps: $agents runs only the asking channel's."""
    launching, settings, jobs, approvals = make(tmp_path, WANDB_ENTITY="team")
    try:
        bob = asker(settings, BOB, "general")
        for other in ("rival/mnist/ab12cd34", "team/secret/ab12cd34", "team/MNIST/ab12cd34"):
            refused = await launching.agents(bob, other, "2")
            assert isinstance(refused, Refused), other
            assert "not a sweep of this channel's W&B project (`team/mnist`)" in refused.text, refused
        entries = approvals.entries(20)
        assert sum(e.action == "refused" and "agents" in (e.detail or "") for e in entries) == 3, "audited"
        no_entity, _, jobs2, approvals2 = make(tmp_path / "bare")
        try:
            bare = await no_entity.agents(asker(no_entity.settings, BOB, "general"), "someone/mnist/ab12cd34", "")
            assert isinstance(bare, Refused) and "no W&B entity" in bare.text, "an entity that cannot be checked"
        finally:
            jobs2.close()
            approvals2.close()
        assert await launching.scheduler.recent(5) == [], "nothing queued"
    finally:
        jobs.close()
        approvals.close()


async def test_agents_refuse_a_route_whose_jobs_do_not_run_locally(tmp_path: Path) -> None:
    for backend in ("slurm", "container"):
        launching, settings, jobs, approvals = make(tmp_path / backend, WANDB_ENTITY="team", ADJUTANT_LAUNCHER=backend)
        try:
            refused = await launching.agents(asker(settings, BOB, "general"), "ab12cd34", "2")
            assert isinstance(refused, Refused), backend
            assert "bot's own Python" in refused.text and f"jobs run on {backend}" in refused.text, refused.text
        finally:
            jobs.close()
            approvals.close()


async def test_agents_admit_the_whole_pool_without_asking_wandb(tmp_path: Path) -> None:
    """A finished agent is replaced while W&B has trials: the quota and approvals see ADJUTANT_MAX_SWEEP agent jobs
    (the service makes no more), and the answer does not wait for W&B."""
    launching, settings, jobs, approvals = make(
        tmp_path, WANDB_ENTITY="team", ADJUTANT_APPROVAL_JOBS="4", ADJUTANT_MAX_SWEEP="3"
    )
    try:
        bob = asker(settings, BOB, "general")
        plan = await launching.agents(bob, "ab12cd34", "5 --gpus 1 --time 30m")
        assert isinstance(plan, SearchPlan), plan
        assert (plan.trials, plan.parallel, plan.gpu_hours) == (3, 3, 3 * 1 * 0.5), "3 jobs in all, 3 at once"
        assert plan.warning is not None and plan.warning.startswith("At most 3 agent jobs in all (ADJUTANT_MAX_SWEEP)")
    finally:
        jobs.close()
        approvals.close()
    launching, settings, jobs, approvals = make(tmp_path / "more", WANDB_ENTITY="team", ADJUTANT_APPROVAL_JOBS="4")
    try:
        capped = await launching.agents(asker(settings, BOB, "general"), "ab12cd34", "2")
        assert isinstance(capped, Refused) and "need approval (16 jobs is above 4" in capped.text, "the pool"
    finally:
        jobs.close()
        approvals.close()


async def test_a_configuration_nested_too_deeply_or_too_long_is_a_sentence(world) -> None:
    launching, settings = world
    bob = asker(settings, BOB, "general")
    deep = "parameters: " + "[" * 994 + "]" * 994
    assert len(deep) == 2000
    nested = await launching.sweep(bob, deep)
    assert isinstance(nested, Refused) and nested.text == "Not queued: the sweep configuration is nested too deeply"
    json_deep = await launching.sweep(bob, '{"x": ' + "[" * 990 + "]" * 990 + "}")
    assert isinstance(json_deep, Refused) and "nested too deeply" in json_deep.text, json_deep
    date = await launching.sweep(bob, "method: grid\nparameters:\n  day: {values: [2001-13-45]}\n")
    assert isinstance(date, Refused) and date.text.startswith("Not queued: the sweep configuration cannot be read")
    long = await launching.sweep(bob, "", attached="method: grid\n" + "#" * 70_000)
    assert isinstance(long, Refused) and "too long: 70,013 characters (at most 64,000)" in long.text, long


async def test_started_agents_carry_the_routes_experiment_script(tmp_path: Path) -> None:
    """The sweep service lets W&B's agents run only the route's own script: start_sweep gives it (agents only)."""
    from types import SimpleNamespace

    launching, settings, jobs, approvals = make(tmp_path, WANDB_ENTITY="team")
    created: list[dict] = []

    class Service:
        async def create(self, **given: object) -> SimpleNamespace:
            created.append(given)
            return SimpleNamespace(id=f"sweep-{len(created)}")

    try:
        bob = asker(settings, BOB, "general")
        agents = await launching.agents(bob, "ab12cd34", "2")
        search = await launching.sweep(bob, BAYES)
        assert isinstance(agents, SearchPlan) and isinstance(search, SearchPlan)
        for plan in (agents, search):
            await launching.start_sweep(plan, bob, Service())  # type: ignore[arg-type]
    finally:
        jobs.close()
        approvals.close()
    launches = [given["launch"] for given in created]
    assert launches[0].script == str(AGENT_SCRIPT) and launches[0].experiment_script == str(tmp_path / "run.sh")
    assert launches[1].script == str(tmp_path / "run.sh") and launches[1].experiment_script is None
