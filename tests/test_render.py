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
