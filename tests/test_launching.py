"""The launch service on its own: real stores in a SQLite file, a fake launcher, routes from a projects file with two
channels and different launch rules; no bot. Every action on a job follows the job's own route."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from adjutant.approvals import ApprovalStore
from adjutant.jobs import JobState, JobStore
from adjutant.launching import Asker, Awaiting, Launching, Queued, Refused, SweepPlan
from adjutant.projects import ProjectRoute
from adjutant.scheduler import CancelOutcome, CancelResult, Scheduler
from adjutant.settings import Settings
from tests.test_scheduler import FakeLauncher

ROUTES = """
[[projects]]
project = "mnist"
channel = "general"
experiment_script = "run.sh"
launch_roles = ["ml-team"]

[[projects]]
project = "secret"
channel = "bot-admin"
experiment_script = "run.sh"
launch_roles = ["Admin"]
"""


@dataclass(frozen=True)
class Role:
    id: int
    name: str


@dataclass(frozen=True)
class Perms:
    administrator: bool = False
    manage_guild: bool = False


@dataclass(frozen=True)
class Member:
    """A member as the access rules read one (a discord.Member has the same attributes)."""

    id: int
    name: str
    roles: tuple[Role, ...] = ()
    guild_permissions: Perms = field(default_factory=Perms)

    def __str__(self) -> str:
        return self.name


BOB = Member(2, "bob", (Role(10, "ml-team"),))
ADMIN = Member(1, "admin", (Role(11, "Admin"), Role(10, "ml-team")))
ALICE = Member(3, "alice")


@pytest.fixture
def world(tmp_path: Path) -> tuple[Launching, Settings]:
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    config = tmp_path / "projects.toml"
    config.write_text(ROUTES)
    settings = Settings.from_env({"ADJUTANT_CONFIG": str(config), "ADJUTANT_STATE_DIR": str(tmp_path / "state")})
    path = tmp_path / "adjutant.sqlite3"
    jobs = JobStore(path)
    approvals = ApprovalStore(path)
    launcher = FakeLauncher()
    scheduler = Scheduler(
        jobs, lambda backend: launcher, log_dir=tmp_path / "logs", max_concurrent=1, cancel_grace_seconds=30,
        environment=lambda job: {},
    )  # fmt: skip
    launching = Launching(settings, scheduler, approvals, quota_of=lambda member: None, watcher_of=lambda p, e: None)
    yield launching, settings
    jobs.close()
    approvals.close()


def route(settings: Settings, channel: str) -> ProjectRoute:
    return next(r for r in settings.routes if r.channel == channel)


def asker(settings: Settings, who: Member, channel: str, sees: tuple[str, ...] = ("general",)) -> Asker:
    """``who`` asking in ``channel``, able to see the channels named in ``sees``."""
    return Asker(
        user=who,
        is_owner=False,
        route=route(settings, channel),
        channel_id=100 if channel == "general" else 200,
        guild_id=1,
        can_see=lambda r: str(r.channel) in sees,
    )


async def launched(launching: Launching, who: Asker, text: str = '{"lr": 0.1}') -> Any:
    outcome = await launching.experiment(who, text)
    assert isinstance(outcome, Queued), outcome
    return outcome.jobs[0]


async def test_a_job_records_its_route_and_every_action_follows_it(world) -> None:
    launching, settings = world
    admin_here = asker(settings, ADMIN, "bot-admin", sees=("general", "bot-admin"))
    job = await launched(launching, admin_here, '{"secret_param": "s3cr3t-value"}')
    assert job.route == "bot-admin" and launching.route_of(job) == route(settings, "bot-admin")

    bob = asker(settings, BOB, "general", sees=("general", "bot-admin"))  # bob may launch in #general only
    refused = await launching.cancel(bob, job.id)
    assert isinstance(refused, Refused) and "Admin" in refused.text, "the job's route's rule, not #general's"
    assert (await launching.scheduler.get(job.id)).state in (JobState.QUEUED, JobState.STARTING, JobState.RUNNING)
    entries = launching.approvals.entries(5)
    assert entries[0].action == "refused" and entries[0].actor == "bob" and entries[0].target == job.id

    done = await launching.cancel(admin_here, job.id)
    assert isinstance(done, CancelResult) and done.outcome in (CancelOutcome.DEQUEUED, CancelOutcome.STOPPING)


async def test_a_member_sees_only_jobs_of_channels_they_can_see(world) -> None:
    launching, settings = world
    private = await launched(launching, asker(settings, ADMIN, "bot-admin", sees=("general", "bot-admin")))
    public = await launched(launching, asker(settings, BOB, "general"))
    alice = asker(settings, ALICE, "general")  # no rights at all, sees #general only
    jobs = await launching.scheduler.recent(10)
    assert [j.id for j in launching.visible(alice, jobs)] == [public.id]
    assert await launching.job_for(alice, private.id) is None, "its log, its parameters: not for alice"
    assert (await launching.job_for(alice, public.id)).id == public.id
    unknown = await launching.cancel(alice, private.id)
    assert isinstance(unknown, CancelResult) and unknown.outcome == CancelOutcome.UNKNOWN, "not even its existence"
    untouched = (JobState.QUEUED, JobState.STARTING, JobState.RUNNING)
    assert (await launching.scheduler.get(private.id)).state in untouched, "not cancelled"


async def test_a_rerun_needs_the_source_visible_and_runs_where_asked(world) -> None:
    launching, settings = world
    private = await launched(launching, asker(settings, ADMIN, "bot-admin", sees=("general", "bot-admin")))
    bob = asker(settings, BOB, "general")
    refused = await launching.rerun(bob, private.id)
    assert isinstance(refused, Refused) and "No job" in refused.text and "s3cr3t" not in refused.text
    assert len(await launching.scheduler.recent(10)) == 1

    bob_sees = asker(settings, BOB, "general", sees=("general", "bot-admin"))
    rerun = await launching.rerun(bob_sees, private.id, "lr=0.5")
    assert isinstance(rerun, Queued)
    new = rerun.jobs[0]
    assert new.route == "general" and new.project == "mnist" and new.params["lr"] == 0.5
    assert "Rerun of job" in rerun.note and "lr" in rerun.note


async def test_launching_refuses_without_the_routes_rights_and_audits(world) -> None:
    launching, settings = world
    alice = asker(settings, ALICE, "general")
    refused = await launching.experiment(alice, '{"lr": 1}')
    assert isinstance(refused, Refused) and "ml-team" in refused.text
    bob_in_admin = asker(settings, BOB, "bot-admin", sees=("general", "bot-admin"))
    refused = await launching.experiment(bob_in_admin, '{"lr": 1}')
    assert isinstance(refused, Refused) and "Admin" in refused.text
    assert [e.action for e in launching.approvals.entries(5)] == ["refused", "refused"]
    bad = await launching.experiment(asker(settings, BOB, "general"), "--gpus ² {}")
    assert isinstance(bad, Refused) and "whole number" in bad.text and "²" in bad.text


async def test_a_sweep_confirmation_checks_the_clickers_rights_again(world) -> None:
    launching, settings = world
    plan = await launching.sweep(asker(settings, BOB, "general"), '{"lr": [0.1, 0.2, 0.3]}')
    assert isinstance(plan, SweepPlan) and len(plan.combos) == 3
    assert await launching.scheduler.recent(10) == [], "nothing is queued before the confirmation"
    lost = Member(2, "bob")  # bob lost ml-team between the preview and the click
    refused = await launching.queue_sweep(plan, asker(settings, lost, "general"), ack_id=None)
    assert isinstance(refused, Refused) and await launching.scheduler.recent(10) == []
    queued = await launching.queue_sweep(plan, asker(settings, BOB, "general"), ack_id=55)
    assert isinstance(queued, Queued) and len(queued.jobs) == 3
    assert {j.route for j in queued.jobs} == {"general"} and {j.ack_id for j in queued.jobs} == {55}


async def test_an_alert_rerun_follows_the_jobs_route(world) -> None:
    launching, settings = world
    job = await launched(launching, asker(settings, ADMIN, "bot-admin", sees=("general", "bot-admin")))
    bob = asker(settings, BOB, "bot-admin", sees=("general", "bot-admin"))
    refused = await launching.alert_rerun(bob, job, None)
    assert isinstance(refused, Refused) and "Admin" in refused.text
    assert await launching.may_act(bob, job, "stop jobs") is not None


async def test_a_request_role_waits_for_an_approver(world, tmp_path) -> None:
    launching, _ = world
    launching.settings = Settings.from_env(
        {"ADJUTANT_CONFIG": str(tmp_path / "projects.toml"), "ADJUTANT_REQUEST_ROLES": "students"}
    )
    student = Member(7, "carol", (Role(20, "students"),))
    outcome = await launching.experiment(asker(launching.settings, student, "general"), '{"lr": 1}')
    assert isinstance(outcome, Awaiting) and "waits for an approver" in outcome.text
    assert await launching.scheduler.recent(10) == [], "nothing runs until approved"


async def test_a_sweeps_worst_case_counts_against_the_quota(world, tmp_path) -> None:
    from adjutant.gpus import QuotaState

    launching, _ = world
    launching.settings = Settings.from_env(
        {"ADJUTANT_CONFIG": str(tmp_path / "projects.toml"), "ADJUTANT_GPU_HOURS_PER_WEEK": "0.01"}
    )
    launching.quota_of = lambda member: (QuotaState(used=0.0, quota=0.01), dt.datetime.now(dt.UTC))
    bob = asker(launching.settings, BOB, "general")
    no_limit = await launching.sweep(bob, '--gpus 4 {"lr": [1, 2, 3, 4, 5, 6, 7, 8]}')
    assert isinstance(no_limit, Refused) and "--time" in no_limit.text, "a quota needs a time limit"
    over = await launching.sweep(bob, '--gpus 4 --time 1h {"lr": [1, 2, 3, 4, 5, 6, 7, 8]}')
    assert isinstance(over, Refused) and "32" in over.text and "0.0 " not in over.text
    assert await launching.scheduler.recent(10) == []


async def test_a_projects_table_picks_where_its_jobs_run(world, tmp_path) -> None:
    launching, _ = world
    config = tmp_path / "projects.toml"
    config.write_text(ROUTES.replace('launch_roles = ["Admin"]', 'launch_roles = ["Admin"]\nlauncher = "container"'))
    launching.settings = Settings.from_env({"ADJUTANT_CONFIG": str(config)})
    launching.routes = launching.settings.routes
    general = await launched(launching, asker(launching.settings, BOB, "general"))
    private = await launched(launching, asker(launching.settings, ADMIN, "bot-admin", sees=("bot-admin",)))
    assert (general.backend, private.backend) == ("local", "container")


async def test_memory_and_cpus_asked_at_launch_are_the_jobs(world) -> None:
    launching, settings = world
    job = await launched(launching, asker(settings, BOB, "general"), '--memory 16g --cpus 2 {"lr": 1}')
    assert job.overrides == {"mem": "16G", "cpus": "2"}
    plan = await launching.sweep(asker(settings, BOB, "general"), '--memory 512M {"lr": [1, 2]}')
    assert isinstance(plan, SweepPlan)
    queued = await launching.queue_sweep(plan, asker(settings, BOB, "general"), ack_id=None)
    assert isinstance(queued, Queued) and {tuple(j.overrides.items()) for j in queued.jobs} == {(("mem", "512M"),)}
    rerun = await launching.rerun(asker(settings, BOB, "general"), job.id, "--cpus 4 lr=2")
    assert isinstance(rerun, Queued) and rerun.jobs[0].overrides == {"mem": "16G", "cpus": "4"}


async def test_a_sweep_whose_route_is_gone_is_refused_not_judged_under_another_route(world) -> None:
    """A sweep started in a channel no longer configured: nobody controls or sees it (never the first route's rule)."""
    import dataclasses

    launching, settings = world
    general = route(settings, "general")
    assert launching.sweep_route("general", 100) == general
    assert launching.sweep_route(None, None) is not general, "no route recorded, no channel: no fallback"
    gone = launching.sweep_route("old-channel", 999)
    owner = dataclasses.replace(asker(settings, ADMIN, "general", sees=("general", "old-channel")), is_owner=True)
    for who in (asker(settings, BOB, "general"), owner):
        assert launching.may_launch(who, general), "they may launch in the first route"
        refused = await launching.may_control_sweep(who, gone, "pause sweeps", "sweep-abc123")
        assert isinstance(refused, Refused) and "a channel Adjutant no longer serves" in refused.text, refused
        assert not launching.sees_route(who, gone)
    assert await launching.may_control_sweep(asker(settings, BOB, "general"), general, "stop sweeps", "s") is None
