"""The quota counts what a request asks for (issue 21 item 5): cells x GPUs x time limit against what is left, a time
limit on every GPU job of a member with a quota, refusals that name the worst case and what is left and never read
"0.0"; the GPU-hours formatter shared with $usage; $usage's arguments (issue 20). Pure, no bot."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest

from adjutant.admission import UNSET, Request, Verdict, admit
from adjutant.gpus import Commitment, QuotaState, Use, committed_gpu_hours, usage
from adjutant.render import format_hours
from adjutant.usage_render import (
    matching_members,
    parse_usage_args,
    quota_refusal,
    usage_embed,
    usage_member_ambiguous,
    usage_member_unknown,
)

NOW = dt.datetime(2026, 12, 7, 10, 0, tzinfo=dt.UTC)
ZERO_POINT_ZERO = re.compile(r"(?<![0-9.])0\.0(?![0-9])")


def ask(**overrides: Any) -> Request:
    base: dict[str, Any] = {
        "gpus": 1,
        "cells": 1,
        "may_launch": True,
        "may_request": False,
        "pool_size": None,
        "quota": QuotaState(0.0, 10.0),
        "quota_frees_at": NOW,
        "hours_per_cell": 1.0,
    }
    return Request(**{**base, **overrides})


def decide(request: Request) -> Any:
    return admit(request, approval_gpus=None, approval_jobs=None)


def test_a_sweep_cannot_overshoot_the_quota() -> None:
    """bob, at 0 of 0.01 GPU-hours, queued --gpus 4 with 8 cells and all 8 ran (2.7 times his quota)."""
    result = decide(ask(gpus=4, cells=8, quota=QuotaState(0.0, 0.01), hours_per_cell=1.0))
    assert result.verdict == Verdict.REFUSED
    assert (
        "this sweep may use up to 8 jobs \N{MULTIPLICATION SIGN} 4 GPUs \N{MULTIPLICATION SIGN} 1h 00m" in result.text
    )
    assert "= 32.0 GPU-hours" in result.text, "the worst case is named"
    assert "you have 36 GPU-seconds left of your 0.01 GPU-hours (36 GPU-seconds)" in result.text, "and what is left"
    assert "fewer jobs, fewer GPUs or a shorter --time" in result.text
    assert not ZERO_POINT_ZERO.search(result.text), result.text


def test_a_job_without_a_time_limit_is_refused_with_the_fix() -> None:
    """A single --gpus 64 job without any time limit (no --time, no ADJUTANT_TIME_LIMIT) was unbounded."""
    result = decide(ask(gpus=64, hours_per_cell=None))
    assert result.verdict == Verdict.REFUSED
    assert "every job that uses GPUs needs a time limit" in result.text
    assert "ADJUTANT_TIME_LIMIT is not set" in result.text and "--time 2h" in result.text


def test_what_fits_launches_and_what_is_committed_is_not_left() -> None:
    assert decide(ask(gpus=2, cells=2, hours_per_cell=2.5)).verdict == Verdict.LAUNCH, "10 of 10: exactly fits"
    assert decide(ask(gpus=2, cells=2, hours_per_cell=2.5, quota=QuotaState(0.5, 10))).verdict == Verdict.REFUSED
    held = decide(ask(gpus=1, hours_per_cell=3.0, quota=QuotaState(2.0, 10), committed=6.0))
    assert held.verdict == Verdict.REFUSED, "2 used + 6 that queued and running jobs may use: 2 left, 3 asked"
    assert "you have 2.0 GPU-hours left" in held.text and "may still use 6.0 GPU-hours" in held.text
    assert "this job may use up to 1 GPU \N{MULTIPLICATION SIGN} 3h 00m = 3.0 GPU-hours" in held.text


def test_no_gpus_needs_no_time_limit_and_costs_nothing() -> None:
    result = decide(ask(gpus=0, cells=50, hours_per_cell=None, quota=QuotaState(9.99, 10)))
    assert result.verdict == Verdict.LAUNCH


def test_the_warning_counts_the_worst_case() -> None:
    result = decide(ask(gpus=1, hours_per_cell=4.0, quota=QuotaState(4.0, 10)))
    assert result.verdict == Verdict.LAUNCH
    assert result.warning is not None and "you may reach 8.0 (80%)" in result.warning
    assert decide(ask(gpus=1, hours_per_cell=1.0, quota=QuotaState(4.0, 10))).warning is None
    old_rule = decide(ask(quota=QuotaState(8.5, 10), gpus=0))
    assert old_rule.warning is not None and "8.5 of your 10 GPU-hours this week (85%)" in old_rule.warning


def test_the_older_rules_still_come_first() -> None:
    assert decide(ask(may_launch=False, may_request=False, hours_per_cell=None)).text == "not allowed"
    too_big = decide(ask(gpus=9, pool_size=8, hours_per_cell=None))
    assert too_big.text.startswith("Not launched: it asks for 9 GPUs per job; this machine has 8")
    used_up = decide(ask(quota=QuotaState(10.5, 10)))
    assert used_up.text.startswith("Not launched: you have used 10.5 of your 10 GPU-hours over the last 7 days")
    needs_approval = admit(ask(gpus=4, hours_per_cell=1.0), approval_gpus=2, approval_jobs=None)
    assert needs_approval.verdict == Verdict.APPROVAL, "a request that fits the quota may still need an approver"
    over_and_big = admit(ask(gpus=4, hours_per_cell=5.0), approval_gpus=2, approval_jobs=None)
    assert over_and_big.verdict == Verdict.REFUSED, "over the quota: refused, not sent to an approver"


def test_callers_that_do_not_give_a_time_limit_keep_the_old_rule() -> None:
    assert decide(ask(gpus=4, cells=8, hours_per_cell=UNSET)).verdict == Verdict.LAUNCH
    assert decide(ask(gpus=4, cells=8, hours_per_cell=UNSET, quota=None)).verdict == Verdict.LAUNCH
    assert decide(ask(gpus=4, cells=8, hours_per_cell=None, quota=None)).verdict == Verdict.LAUNCH, "no quota"


def test_committed_gpu_hours() -> None:
    jobs = [
        Commitment(2, 3600.0, None),  # queued: its whole limit, 2 GPU-hours
        Commitment(4, 7200.0, NOW - dt.timedelta(minutes=30)),  # running: 1.5 h left on 4 GPUs
        Commitment(1, 600.0, NOW - dt.timedelta(hours=1)),  # past its limit
        Commitment(8, None, NOW),  # no limit: counted by its use so far only
        Commitment(0, 3600.0, None),
    ]
    assert committed_gpu_hours(jobs, NOW) == pytest.approx(2 + 6)


def test_quota_refusals_never_read_zero_point_zero() -> None:
    text = quota_refusal(QuotaState(0.012, 0.01), NOW)
    assert "you have used 43 GPU-seconds of your 0.01 GPU-hours (36 GPU-seconds)" in text
    assert not ZERO_POINT_ZERO.search(text), text
    small = quota_refusal(QuotaState(10.02, 10), NOW)
    assert "used 10.0 of your 10 GPU-hours" in small


@pytest.mark.parametrize(
    ("hours", "long", "short"),
    [
        (0, "0 GPU-hours", "0 GPU-h"),
        (3, "3.0 GPU-hours", "3.0 GPU-h"),
        (0.05, "0.1 GPU-hours", "0.1 GPU-h"),
        (0.04, "2 GPU-minutes", "2 GPU-min"),
        (1 / 60, "1 GPU-minute", "1 GPU-min"),
        (0.01, "36 GPU-seconds", "36 GPU-s"),
        (1 / 3600, "1 GPU-second", "1 GPU-s"),
        (1e-9, "under 1 GPU-second", "under 1 GPU-s"),
        (1234.56, "1,234.6 GPU-hours", "1,234.6 GPU-h"),
    ],
)
def test_format_hours(hours: float, long: str, short: str) -> None:
    assert format_hours(hours) == long and format_hours(hours, short=True) == short
    assert format_hours(hours, "job").replace("job", "GPU") == long


def test_usage_shows_minutes_when_hours_round_to_zero() -> None:
    """ "0.0 GPU-hours" beside "Used the most: admin (75 %)" (issue 20)."""
    uses = [
        Use(1, "admin", "p", 3, NOW - dt.timedelta(seconds=40), NOW),
        Use(2, "bob", "p", 1, NOW - dt.timedelta(seconds=40), NOW),
    ]
    embed = usage_embed(usage(uses, NOW - dt.timedelta(days=7), NOW), "week")
    assert embed["description"] == "2 jobs \N{MIDDLE DOT} 1 job-minute \N{MIDDLE DOT} 3 GPU-minutes"
    texts = [embed["description"], *(f["value"] for f in embed["fields"])]
    assert not any(ZERO_POINT_ZERO.search(t) for t in texts), texts
    assert "**admin** \N{MIDDLE DOT} 1 job(s) \N{MIDDLE DOT} 40 job-s \N{MIDDLE DOT} 2 GPU-min" in texts[1]
    assert "admin (75% of GPU-hours)" in texts[-1]


def test_usage_arguments() -> None:
    assert (parse_usage_args([]).period, parse_usage_args([]).member) == ("week", None)
    query = parse_usage_args(["Month", "<@123456789012345678>"])
    assert (query.period, query.member, query.period_given) == ("month", "<@123456789012345678>", True)
    assert parse_usage_args(["mallory", "day"]).member == "mallory"
    with pytest.raises(ValueError, match="at most one member: 'a' and 'b' are two"):
        parse_usage_args(["a", "b"])
    with pytest.raises(ValueError, match="one period"):
        parse_usage_args(["day", "week"])


def test_usage_unknown_words_say_what_is_wrong() -> None:
    """ "$usage fortnight", "$usage week mallory" and "$usage @mallory" answered "Too many arguments" (issue 20)."""
    fortnight = usage_member_unknown(parse_usage_args(["fortnight"]))
    assert fortnight.startswith("'fortnight' is neither a period (day, week or month) nor a member of this server.")
    mallory = usage_member_unknown(parse_usage_args(["week", "mallory"]))
    assert mallory.startswith("No member of this server is named 'mallory'.")
    at = usage_member_unknown(parse_usage_args(["@mallory"]))
    assert at.startswith("No member of this server is named '@mallory'.")
    assert "Usage: `$usage [day|week|month] [member]`" in at
    assert usage_member_ambiguous(parse_usage_args(["sam"]), 2).startswith("2 members are named 'sam'")


def test_matching_members() -> None:
    members = [(123456789012345678, ["alice", "Alice A."]), (223456789012345678, ["bob", None]), (3, ["Bob"])]
    assert matching_members("<@123456789012345678>", members) == [123456789012345678]
    assert matching_members("<@!223456789012345678>", members) == [223456789012345678]
    assert matching_members("123456789012345678", members) == [123456789012345678]
    assert matching_members("@ALICE", members) == [123456789012345678]
    assert matching_members("alice a.", members) == [123456789012345678]
    assert matching_members("bob", members) == [223456789012345678, 3], "ambiguous"
    assert matching_members("mallory", members) == []
    assert matching_members("<@999999999999999999>", members) == []
