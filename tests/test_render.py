"""Rendering stays within Discord's limits, whatever W&B hands us (property-based)."""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adjutant.render import (
    EMBED_TOTAL_LIMIT,
    embed_length,
    fit_embed,
    format_duration,
    format_number,
    pack_embeds,
    truncate,
)
from adjutant.run_render import event_embed, leaderboard_embed, run_card_embed, runs_table_embed, summary_embed
from adjutant.runs import RunInfo
from tests.standins.discord_standin import _embeds_too_big

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3000),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=50), inner, max_size=5)),
    max_leaves=20,
)
names = st.one_of(st.text(min_size=1, max_size=5000), st.just("@everyone"), st.just("```"), st.just("<@123>"))
runs = st.builds(
    RunInfo,
    id=st.text(min_size=1, max_size=300),
    name=names,
    state=st.sampled_from(["running", "finished", "crashed", "failed", "killed", "pending", "weird"]),
    created_at=st.just(NOW - dt.timedelta(hours=2)),
    heartbeat_at=st.just(NOW - dt.timedelta(hours=1)),
    user=st.one_of(st.none(), names),
    url=st.just("https://wandb.ai/team/proj/runs/x"),
    config=st.dictionaries(st.text(max_size=300), json_values, max_size=60),
    summary=st.dictionaries(st.text(max_size=300), json_values, max_size=60),
    tags=st.lists(st.text(max_size=500), max_size=30).map(tuple),
)
events = st.sampled_from(["started", "finished", "crashed", "failed", "killed", "stalled", "resumed"])
slow = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def assert_valid(embed: dict) -> None:
    assert not _embeds_too_big([embed]), embed
    assert embed_length(embed) <= EMBED_TOTAL_LIMIT


@slow
@given(run=runs, event=events, metric=st.text(max_size=400))
def test_event_embed_within_limits(run: RunInfo, event: str, metric: str) -> None:
    embed = event_embed(run, event, project="team/proj", metric=metric, now=NOW)
    assert_valid(embed)
    assert embed["title"]


@slow
@given(run=runs, metric=st.text(max_size=400))
def test_run_card_within_limits(run: RunInfo, metric: str) -> None:
    assert_valid(run_card_embed(run, project="team/proj", metric=metric, now=NOW))


@slow
@given(group=st.lists(runs, min_size=0, max_size=25), metric=st.text(max_size=400))
def test_tables_within_limits(group: list[RunInfo], metric: str) -> None:
    assert_valid(runs_table_embed(group, project="p" * 300, state=None, metric=metric, now=NOW))
    assert_valid(leaderboard_embed(group, project="p" * 300, metric=metric, goal="min"))
    counts = {"finished": 10**12, "running": 3}
    best = group[0] if group else None
    assert_valid(summary_embed(project="p" * 300, counts=counts, best=best, running=group, metric=metric, goal="max"))


@slow
@given(group=st.lists(runs, min_size=1, max_size=40), event=events)
def test_pack_embeds_respects_message_limits(group: list[RunInfo], event: str) -> None:
    embeds = [event_embed(r, event, project="team/proj", metric="loss", now=NOW) for r in group]
    messages = pack_embeds(embeds)
    assert sum(len(m) for m in messages) == len(embeds), "nothing dropped"
    for message in messages:
        assert 1 <= len(message) <= 10
        assert not _embeds_too_big(message)
    flattened = [e["title"] for m in messages for e in m]
    assert flattened == [e["title"] for e in embeds], "order kept"


def test_mentions_are_escaped_in_descriptions() -> None:
    run = RunInfo(id="x", name="@everyone", state="finished", user="@here", url=None)
    embed = event_embed(run, "finished", project="p", metric="loss", now=NOW)
    assert "@everyone" not in embed["description"] and "@here" not in embed["description"]


@given(text=st.text(max_size=3000), limit=st.integers(min_value=0, max_value=2500))
def test_truncate(text: str, limit: int) -> None:
    out = truncate(text, limit)
    assert len(out) <= limit
    if len(text) <= limit:
        assert out == text
    elif limit > 1:
        assert out.endswith("…")


def test_fit_embed_trims_fields_first() -> None:
    embed = {"title": "t", "description": "d" * 4000, "fields": [{"name": "n", "value": "v" * 1024}] * 25}
    fitted = fit_embed(embed)
    assert embed_length(fitted) <= EMBED_TOTAL_LIMIT
    assert fitted["description"] == "d" * 4000


def test_format_number_handles_every_float() -> None:
    assert format_number(float("inf")) == "inf"
    assert format_number(float("-inf")) == "-inf"
    assert format_number(float("nan")) == "nan"
    assert format_number(3.0) == "3"
    assert format_number(0.123456) == "0.1235"
    assert format_number(1e300) == "1e+300"


def test_config_with_infinity_renders() -> None:
    run = RunInfo(id="x", name="n", state="running", config={"lr": float("inf"), "": float("nan")})
    embed = event_embed(run, "started", project="p", metric="loss", now=NOW)
    assert "lr = inf" in embed["fields"][0]["value"]


def test_format_duration() -> None:
    assert format_duration(None) == "unknown"
    assert format_duration(42) == "42s"
    assert format_duration(3 * 3600 + 120) == "3h 02m"
    assert format_duration(2 * 86400 + 3600) == "2d 01h"


def test_long_answers_are_paged_never_cut() -> None:
    from adjutant.render import page_lines, paged_embeds

    lines = [f"line {i} " + "x" * (i % 300) for i in range(400)]
    pages = page_lines(lines, per_page=15, budget=3000)
    assert [line for page in pages for line in page] == lines
    assert all(len(page) <= 15 and sum(len(x) + 1 for x in page) <= 3000 for page in pages)
    embeds = paged_embeds({"title": "t"}, lines, per_page=15, head="HEAD", code=True)
    assert len(embeds) == len(page_lines(lines, per_page=15, budget=4096 - 200 - 4))
    for number, embed in enumerate(embeds, 1):
        assert_valid(embed)
        assert (
            embed["description"].startswith("```\nHEAD\n")
            and embed["footer"]["text"] == f"page {number} of {len(embeds)}"
        )


def test_jobs_and_audit_pages_hold_every_entry() -> None:
    import datetime as dt

    from adjutant.approvals import AuditEntry
    from adjutant.job_render import jobs_pages
    from adjutant.jobs import Job, JobState
    from adjutant.usage_render import audit_pages

    def job(i: int, state: JobState) -> Job:
        return Job(
            seq=i,
            id=f"j{i:06d}",
            state=state,
            params={"i": i, "pad": "p" * 50},
            script="s",
            requested_by_id=1,
            requested_by="admin",
            channel_id=None,
            message_id=None,
            ack_id=None,
            sweep_id=None,
            wandb_run_id="w",
            log_path="l",
            supervisor_pid=None,
            pid=None,
            pgid=None,
            exit_code=None,
            reason=None,
            created_at=NOW,
            started_at=None,
            ended_at=None,
            cancel_requested_at=None,
            cancelled_by=None,
            killed_at=None,
            reported=False,
            backend="local",
            external_id=None,
            external_state=None,
            thread_id=None,
            acked=True,
            report_id=None,
            params_text="{}",
        )

    queued = [job(i, JobState.QUEUED) for i in range(60)]
    pages = jobs_pages([job(100, JobState.RUNNING)], queued, [], NOW, prefix="$")
    text = "\n".join(p["description"] for p in pages)
    assert all(f"`j{i:06d}`" in text for i in range(60)) and "`j000100`" in text
    assert len(pages) > 1 and all(assert_valid(p) is None for p in pages)
    entries = [
        AuditEntry(i, NOW - dt.timedelta(minutes=i), 1, "admin", None, 5, "launch", f"j{i:06d}", "{}")
        for i in range(40)
    ]
    audit = audit_pages(entries)
    assert len(audit) == 3 and sum(len(p["description"].splitlines()) for p in audit) == 40


def test_compare_flattens_nested_keys_and_counts_equal_ones() -> None:
    from adjutant.compare import compare, compare_embed, flatten

    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": {}}) == {"a.b": 1, "a.c.d": [1, 2], "e": {}}
    runs = [
        RunInfo("r1", "one", "finished", config={"opt": {"lr": 0.1}, "x": 1}, summary={"loss": 2.0, "acc": 0.5}),
        RunInfo("r2", "two", "crashed", config={"opt": {"lr": 0.2}, "x": 1, "y": 3}, summary={"loss": 1.5}),
    ]
    comparison = compare(runs, "loss")
    assert comparison.differing == [("opt.lr", [0.1, 0.2]), ("y", [None, 3])] and comparison.equal == 1
    assert comparison.metrics[0] == ("loss", [2.0, 1.5], [0.0, -0.5])
    assert comparison.metrics[1] == ("acc", [0.5, None], [0.0, None])
    assert_valid(compare_embed(comparison, project="p", metric="loss"))


def test_the_status_card_is_edited_at_most_once_a_minute_and_only_on_a_change() -> None:
    from adjutant.status import Part, Snapshot, edit_due, status_card

    ok = Snapshot((Part("W&B p", True, 1000.0), Part("scheduler", True, 1001.0)), queued=2, running=1)
    later = Snapshot((Part("W&B p", True, 1060.0), Part("scheduler", True, 1061.0)), queued=2, running=1)
    down = Snapshot((Part("W&B p", False, 1000.0, "HTTP 503"), Part("scheduler", True, 1061.0)), queued=2, running=1)
    seen = {"last_signature": ok.signature(), "last_stamps": ok.stamps()}
    assert not edit_due(down, now=1030.0, last_edit=1000.0, **seen), "at most once a minute"
    assert edit_due(down, now=1061.0, last_edit=1000.0, **seen), "a change, a minute later"
    assert not edit_due(later, now=1100.0, last_edit=1000.0, **seen), "newer timestamps alone wait"
    assert edit_due(later, now=1700.0, last_edit=1000.0, **seen), "...ten minutes"
    assert not edit_due(ok, now=5000.0, last_edit=1000.0, **seen), "nothing changed at all"
    green, red = status_card(ok, prefix="$"), status_card(down, prefix="$")
    assert green["title"] == "🟢 Adjutant: all good" and "<t:1000:R>" in green["description"]
    assert red["title"] == "🔴 Adjutant: W&B p not answering" and "HTTP 503" in red["description"]
    assert "**1** running · **2** queued" in green["description"]
    gpus = Snapshot(ok.parts, queued=0, running=0, gpus_free=3, gpus_total=4)
    assert "**3** of 4 GPUs free" in status_card(gpus, prefix="$")["description"]
    assert gpus.signature() != ok.signature()


def test_wording_counts_are_plural_only_when_plural() -> None:
    """``**1 runs**`` and "queued; 1 job(s) ahead" (issue 20's small wording)."""
    from adjutant.render import plural

    assert (plural(1, "run"), plural(2, "run"), plural(2000, "run"), plural(0, "job")) == (
        "1 run",
        "2 runs",
        "2,000 runs",
        "0 jobs",
    )
    one = summary_embed(project="p", counts={"finished": 1}, best=None, running=[], metric="loss", goal="min")
    assert one["description"].startswith("**1 run**: 1 finished")
    many = summary_embed(
        project="p", counts={"finished": 3, "crashed": 1}, best=None, running=[], metric="loss", goal="min"
    )
    assert many["description"].startswith("**4 runs**: 3 finished, 1 crashed")


def test_the_acknowledgement_counts_the_jobs_ahead() -> None:
    from adjutant.job_render import ack_embed
    from adjutant.jobs import Job, JobState

    job = Job(
        **{
            **dict.fromkeys(("channel_id", "message_id", "ack_id", "sweep_id", "supervisor_pid", "pid", "pgid")),
            **dict.fromkeys(("exit_code", "reason", "started_at", "ended_at", "cancel_requested_at", "cancelled_by")),
            **dict.fromkeys(("killed_at", "external_id", "external_state", "thread_id", "report_id")),
            "seq": 1,
            "id": "j1",
            "state": JobState.QUEUED,
            "params": {},
            "script": "s",
            "requested_by_id": 1,
            "requested_by": "admin",
            "wandb_run_id": "w",
            "log_path": "l",
            "created_at": NOW,
            "reported": False,
            "backend": "local",
            "acked": False,
            "params_text": "{}",
        }
    )
    titles = [ack_embed(job, queued_ahead=n, prefix="$")["title"] for n in (0, 1, 2)]
    assert titles == [
        "🧪 Experiment j1: starting now",
        "🧪 Experiment j1: queued; 1 job ahead",
        "🧪 Experiment j1: queued; 2 jobs ahead",
    ]


def test_a_status_card_right_after_a_start_says_starting() -> None:
    """It said "🟢 all good" while each line said "last success not yet"."""
    from adjutant.status import Part, Snapshot, status_card

    fresh = Snapshot((Part("W&B p", True), Part("scheduler", True)), queued=0, running=0)
    card = status_card(fresh, prefix="$")
    assert card["title"] == "🟡 Adjutant: starting (waiting for W&B p, scheduler)"
    assert "not yet" not in card["description"] and "🟡 **W&B p** · starting" in card["description"]
    half = Snapshot((Part("W&B p", True, 1000.0), Part("scheduler", True)), queued=0, running=0)
    assert status_card(half, prefix="$")["title"] == "🟡 Adjutant: starting (waiting for scheduler)"
    assert half.signature() != fresh.signature(), "the first success is a change worth an edit"
    broken = Snapshot((Part("W&B p", False, None, "HTTP 503"), Part("scheduler", True)), queued=0, running=0)
    red = status_card(broken, prefix="$")
    assert red["title"] == "🔴 Adjutant: W&B p not answering" and "🔴 **W&B p** · no success yet" in red["description"]
    done = Snapshot((Part("W&B p", True, 1000.0), Part("scheduler", True, 1001.0)), queued=0, running=0)
    assert status_card(done, prefix="$")["title"] == "🟢 Adjutant: all good"


def test_a_preempted_run_is_told_as_preempted_and_pending_reads_as_waiting() -> None:
    import datetime as dt

    from adjutant import run_render
    from adjutant.runs import RunInfo

    now = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
    run = RunInfo(id="p1", name="pre-run", state="preempted", url="", config={}, summary={}, created_at=now)
    embed = run_render.event_embed(run, "preempted", project="team/proj", metric="loss", now=now)
    assert embed["title"].startswith("⏏️") and "was preempted" in embed["title"]
    assert "not a crash" in embed["description"]
    waiting = RunInfo(id="q1", name="queued-run", state="pending", url="", config={}, summary={}, created_at=now)
    card = run_render.run_card_embed(waiting, project="team/proj", metric="loss", now=now)
    state = next(f["value"] for f in card["fields"] if f["name"] == "State")
    assert "waiting (pending)" in state
