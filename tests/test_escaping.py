"""Every user- or W&B-controlled string shown in chat goes through one escaping function (``render.plain``, and
``render.code_safe`` inside code): a hostile run name, member name, config value, tag, metric name or reason is
fed to every renderer, and no markdown or mention of it survives in any text Discord renders."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from adjutant import compare, job_render, run_render, status, usage_render
from adjutant.alerts import WatchRule
from adjutant.approvals import Approval, ApprovalState, AuditEntry
from adjutant.gpus import QuotaState, Use, usage
from adjutant.jobs import Job, JobRequest, JobState
from adjutant.nvml import GpuReading
from adjutant.render import code_safe, link, plain, safe_url
from adjutant.runs import RunInfo

NOW = dt.datetime(2026, 12, 7, 10, 0, tzinfo=dt.UTC)
ROLE = "<@&123456789012345678>"
#: The name from issue 21 item 9, and one piece of markdown per line (so each is at a line's start once).
HOSTILE_NAME = f"**bold** @everyone {ROLE} [x](http://evil.example) ||sp|| `tick`"
HOSTILE = [
    HOSTILE_NAME,
    "__u__ ~~s~~ <#123456789012345678> <@123456789012345678> @here </cmd:1234> <:e:123>",
    "# head",
    "-# sub",
    "> quote",
    "- item",
    "1. first",
    "[x](http://evil.example)",
    "```\nbreak out",
]


# --- the checker ------------------------------------------------------------------------------------


def rendered_text(out: Any) -> Iterator[tuple[str, str]]:
    """(where, text) of every piece Discord renders as markdown: content, titles, descriptions, field names and
    values (footers and author names are shown as they are: no markdown, no mentions)."""
    if isinstance(out, str):
        yield "text", out
    elif isinstance(out, list | tuple):
        for i, item in enumerate(out):
            for where, text in rendered_text(item):
                yield f"[{i}].{where}", text
    elif isinstance(out, dict):
        for key in ("title", "description", "content"):
            if out.get(key):
                yield key, str(out[key])
        for i, field in enumerate(out.get("fields") or []):
            yield f"fields[{i}].name", str(field.get("name") or "")
            yield f"fields[{i}].value", str(field.get("value") or "")
    else:
        raise TypeError(type(out))


RAW_MARKDOWN = [
    "**bold**",
    "__u__",
    "~~s~~",
    "||sp||",
    "[x](",
    "@everyone",
    "@here",
    "<@1234",
    "<@&1234",
    "<#1234",
    "</cmd",
    "<:e:",
]
LINE_START = re.compile(r"^\s*(# head|-# sub|> quote|- item|1\. first)", re.MULTILINE)


def unescaped(text: str) -> list[str]:
    """The hostile markdown and mentions that Discord would render in ``text`` (empty: all neutralised)."""
    found = []
    text = re.sub(r"\\[^\w\s]", "\u00a7", text)  # an escaped character is shown as itself
    if "`tick`" in text:
        found.append("`tick` (a code span opened by the name)")
    if "```\nbreak out" in text:
        found.append("``` (a code block opened by the name)")
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)  # Adjutant's own code blocks and spans
    text = re.sub(r"`[^`\n]*`", "", text)
    found += [marker for marker in RAW_MARKDOWN if marker in text]
    found += [f"line start {m[1]!r}" for m in LINE_START.finditer(text)]
    return found


def test_the_checker_sees_raw_markdown() -> None:
    """The checker itself: every hostile string unescaped is caught; escaped, nothing is."""
    for hostile in HOSTILE:
        assert LINE_START.match(hostile) or unescaped(f"Run {hostile} ended"), hostile
        assert unescaped(f"x\n{hostile}"), hostile
        assert not unescaped(f"Run {plain(hostile)} ended"), (hostile, plain(hostile))
        assert not unescaped(f"x\n{plain(hostile)}"), hostile
        assert not unescaped(f"```\n{code_safe(hostile)}\n```"), hostile
        assert not unescaped(f"`{code_safe(hostile)}`"), hostile


# --- plain ------------------------------------------------------------------------------------------


def test_plain_escapes_markdown_and_mentions() -> None:
    assert plain("**bold**") == r"\*\*bold\*\*"
    assert plain("[x](http://evil.example)") == r"\[x\](http://evil.example)"
    assert plain("@everyone and @here") == "@\u200beveryone and @\u200bhere"
    assert plain(ROLE) == r"\<@&123456789012345678>"
    assert plain("loss > 2 <t:1:R>") == r"loss > 2 \<t:1:R>"
    assert plain("# head\n- item\n  + more\n12. twelve\n> quote") == (
        "\\# head\n\\- item\n  \\+ more\n12\\. twelve\n\\> quote"
    )
    assert plain("a - b # c 1. d") == "a - b # c 1. d", "only at the start of a line"
    assert plain("ends with \\") == "ends with \\\\", "a trailing backslash cannot escape the markup around it"
    assert plain("val_loss") == r"val\_loss"
    assert plain("W&B p (copy) 0.1") == "W&B p (copy) 0.1", "what is not markdown stays as it is"


def test_link_and_safe_url() -> None:
    assert safe_url("javascript:alert(1)") is None and safe_url(None) is None
    assert safe_url("https://wandb.ai/a b") is None, "a space would end the link"
    assert safe_url("https://wandb.ai/x)(y") == "https://wandb.ai/x%29%28y"
    assert link("a](http://evil.example)", "https://wandb.ai/r") == r"[a\](http://evil.example)](https://wandb.ai/r)"
    assert link("name", "ftp://x") == "name"


# --- every renderer ---------------------------------------------------------------------------------


def run_of(hostile: str) -> RunInfo:
    return RunInfo(
        id="abc123",
        name=hostile,
        state="finished",
        created_at=NOW - dt.timedelta(hours=2),
        heartbeat_at=NOW - dt.timedelta(hours=1),
        user=hostile,
        url="https://wandb.ai/team/proj/runs/abc123",
        config={hostile: hostile, "lr": 0.1, "nested": {hostile: [hostile]}},
        summary={hostile: 0.5, "loss": 0.25, "bad": float("nan"), "_step": 10, "_runtime": 3600},
        tags=(hostile, "ok"),
        group=hostile,
    )


def job_of(hostile: str, state: str = JobState.FAILED, **overrides: Any) -> Job:
    values: dict[str, Any] = {
        "seq": 1,
        "id": "jabc123",
        "state": state,
        "params": {hostile: hostile, "lr": 0.1},
        "script": "train.py",
        "requested_by_id": 7,
        "requested_by": hostile,
        "channel_id": None,
        "message_id": None,
        "ack_id": None,
        "sweep_id": "s1",
        "wandb_run_id": "wabc123",
        "log_path": "/tmp/x.log",
        "supervisor_pid": None,
        "pid": None,
        "pgid": None,
        "exit_code": 1,
        "reason": hostile,
        "created_at": NOW - dt.timedelta(hours=1),
        "started_at": NOW - dt.timedelta(minutes=50),
        "ended_at": NOW,
        "cancel_requested_at": None,
        "cancelled_by": hostile,
        "killed_at": None,
        "reported": False,
        "backend": "slurm",
        "external_id": "42",
        "external_state": hostile,
        "thread_id": None,
        "acked": True,
        "report_id": None,
        "params_text": "{}",
    }
    values.update(overrides)
    job = Job(**values)
    return dataclasses.replace(job, gpus=2, gpu_ids=(0, 1), time_limit=3600.0)


def approval_of(hostile: str, state: ApprovalState) -> Approval:
    request = JobRequest({hostile: hostile}, "train.py", 7, hostile, None, None, gpus=2)
    return Approval(
        id=3,
        state=state,
        kind="sweep",
        requested_by_id=7,
        requested_by=hostile,
        channel_id=None,
        card_id=None,
        requests=[request, request],
        canary=False,
        gpus=2,
        cells=2,
        why=hostile,
        created_at=NOW,
        decided_by=hostile if state != ApprovalState.PENDING else None,
        decided_at=NOW if state != ApprovalState.PENDING else None,
        job_ids=("j1", "j2") if state == ApprovalState.APPROVED else (),
    )


def usage_of(hostile: str) -> Any:
    uses = [
        Use(7, hostile, hostile, 2, NOW - dt.timedelta(hours=3), NOW - dt.timedelta(hours=1)),
        Use(8, "bob", "proj", 1, NOW - dt.timedelta(minutes=1), None),
    ]
    return usage(uses, NOW - dt.timedelta(days=7), NOW)


RENDERERS: dict[str, Callable[[str], Any]] = {
    **{
        f"run_render.event_embed:{event}": (
            lambda hostile, event=event: run_render.event_embed(
                run_of(hostile), event, project="team/proj", metric=hostile, now=NOW
            )
        )
        for event in ("started", "finished", "crashed", "stalled", "no-progress", "progressing", "gpu-idle")
    },
    "run_render.event_embed:nonfinite": lambda hostile: run_render.event_embed(
        dataclasses.replace(run_of(hostile), state="running", summary={hostile: float("nan")}),
        f"nonfinite:{hostile}",
        project="p",
        metric="loss",
        now=NOW,
    ),
    "run_render.event_embed:rule": lambda hostile: run_render.event_embed(
        run_of(hostile),
        "rule:1",
        project="p",
        metric="loss",
        now=NOW,
        rule=WatchRule(hostile, ">", 1.0, f"tag:{hostile}", 1, 7, hostile),
    ),
    "run_render.summary_embed": lambda hostile: run_render.summary_embed(
        project=hostile,
        counts={"finished": 1, hostile: 2},
        best=run_of(hostile),
        running=[run_of(hostile)],
        metric=hostile,
        goal="min",
    ),
    "run_render.summary_embed:missing": lambda hostile: run_render.summary_embed(
        project=hostile, counts=None, best=None, running=[], metric=hostile, goal="min", missing=True
    ),
    "run_render.runs_table_pages": lambda hostile: run_render.runs_table_pages(
        [run_of(hostile)] * 12, project=hostile, state="finished", metric=hostile, now=NOW
    ),
    "run_render.run_card_embed": lambda hostile: run_render.run_card_embed(
        run_of(hostile), project=hostile, metric=hostile, now=NOW
    ),
    "run_render.leaderboard_embed": lambda hostile: run_render.leaderboard_embed(
        [run_of(hostile), dataclasses.replace(run_of(hostile), url=None)], project=hostile, metric=hostile, goal="max"
    ),
    "job_render.ack_embed": lambda hostile: job_render.ack_embed(
        job_of(hostile, JobState.QUEUED), queued_ahead=1, prefix="$", defaults={hostile: hostile}
    ),
    "job_render.status_embed": lambda hostile: job_render.status_embed(
        job_of(hostile, JobState.RUNNING), run=run_of(hostile), metric=hostile, now=NOW, prefix="$"
    ),
    "job_render.status_embed:no run": lambda hostile: job_render.status_embed(
        job_of(hostile, JobState.RUNNING), run=None, metric=hostile, now=NOW, prefix="$"
    ),
    **{
        f"job_render.end_embed:{state}": (
            lambda hostile, state=state: job_render.end_embed(
                job_of(hostile, state),
                log_tail=[hostile, hostile],
                run=run_of(hostile),
                run_url="https://wandb.ai/t/p/runs/wabc123",
                metric=hostile,
                now=NOW,
                prefix="$",
            )
        )
        for state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.LOST)
    },
    "job_render.final_ack_embed": lambda hostile: job_render.final_ack_embed(
        job_of(hostile), report_url="https://discord.com/channels/1/2/3", now=NOW
    ),
    "job_render.jobs_pages": lambda hostile: job_render.jobs_pages(
        [job_of(hostile, JobState.RUNNING)], [job_of(hostile, JobState.QUEUED)] * 30, [job_of(hostile)], NOW, prefix="$"
    ),
    "job_render.sweep_preview": lambda hostile: job_render.sweep_preview([{hostile: hostile}] * 7, cap=10),
    "job_render.log_alert_embed": lambda hostile: job_render.log_alert_embed(job_of(hostile), hostile, hostile),
    "job_render.queue_done_embed": lambda hostile: job_render.queue_done_embed([job_of(hostile)] * 3),
    "job_render.sweep_held_embed": lambda hostile: job_render.sweep_held_embed([job_of(hostile)] * 2, 1, hostile),
    "job_render.remedy_embed": lambda hostile: job_render.remedy_embed(
        job_of(hostile), hostile, "time", "1:00", "1:30"
    ),
    "usage_render.gpu_lines+gpus_embed": lambda hostile: usage_render.gpus_embed(
        usage_render.gpu_lines(
            [0, 1, 2],
            {0: job_of(hostile, JobState.RUNNING)},
            [GpuReading(1, hostile, 50.0, 4096, 16384, 60.0)],
            NOW,
        ),
        free=1,
        queued=2,
        note=hostile,
    ),
    "usage_render.usage_embed": lambda hostile: usage_render.usage_embed(usage_of(hostile), "week", member=None),
    "usage_render.usage_embed:member": lambda hostile: usage_render.usage_embed(
        usage_of(hostile), "week", member=hostile
    ),
    "usage_render.quota texts": lambda hostile: [
        usage_render.quota_warning(QuotaState(8.5, 10)),
        usage_render.quota_refusal(QuotaState(0.02, 0.01), NOW),
        usage_render.quota_worst_case_refusal(QuotaState(1, 10), cells=8, gpus=4, hours_per_cell=1, committed=1),
        usage_render.quota_needs_time_limit(0.01),
        usage_render.quota_worst_case_warning(QuotaState(1, 10), worst=7),
    ],
    **{
        f"usage_render.approval_card:{state}": (
            lambda hostile, state=state: usage_render.approval_card(approval_of(hostile, state))
        )
        for state in ApprovalState
    },
    "usage_render.audit_pages": lambda hostile: usage_render.audit_pages(
        [AuditEntry(i, NOW, 7, hostile, 1, 5, "launch", hostile, hostile) for i in range(20)], member=hostile
    ),
    "usage_render.usage_member_unknown": lambda hostile: [
        usage_render.usage_member_unknown(usage_render.parse_usage_args([hostile])),
        usage_render.usage_member_unknown(usage_render.parse_usage_args(["week", hostile])),
        usage_render.usage_member_ambiguous(usage_render.parse_usage_args([hostile]), 2),
    ],
    "compare.compare_embed": lambda hostile: compare.compare_embed(
        compare.compare(
            [run_of(hostile), dataclasses.replace(run_of(hostile), id="r2", config={hostile: 2}, url=None)], hostile
        ),
        project=hostile,
        metric=hostile,
    ),
    "status.status_card": lambda hostile: [
        status.status_card(
            status.Snapshot((status.Part(hostile, False, 1000.0, hostile), status.Part(hostile, True)), 1, 2),
            prefix="$",
        ),
        status.status_card(status.Snapshot((status.Part(hostile, True),), 0, 0), prefix="$"),
    ],
}


@pytest.mark.parametrize("hostile", HOSTILE, ids=[f"hostile{i}" for i in range(len(HOSTILE))])
@pytest.mark.parametrize("renderer", list(RENDERERS))
def test_no_renderer_lets_markdown_or_mentions_through(renderer: str, hostile: str) -> None:
    out = RENDERERS[renderer](hostile)
    problems = {where: found for where, text in rendered_text(out) if (found := unescaped(text))}
    assert not problems, problems


def test_the_run_card_shows_the_hostile_name_escaped() -> None:
    """Issue 21 item 9: ``$run``'s card showed the name as markdown; it shows it literally, as ``$compare`` does."""
    card = run_render.run_card_embed(run_of(HOSTILE_NAME), project="p", metric="loss", now=NOW)
    assert card["title"] == plain(HOSTILE_NAME)
    assert "@\u200beveryone" in card["title"] and r"\[x\](http://evil.example)" in card["title"]


def test_a_log_alert_card_names_its_pattern_in_words() -> None:
    """Issue 20: the card's title read `logged Traceback \\(most recent call last\\)`."""
    card = job_render.log_alert_embed(job_of("x"), r"Traceback \(most recent call last\)", "Traceback (most recent…")
    assert card["title"] == "🧾 Job jabc123 logged a Python traceback"
    assert "\\(" not in card["description"] and "a Python traceback" in card["description"]
