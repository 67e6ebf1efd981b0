"""The sweep card, preview, CSV and chart (adjutant.sweeps.render): pure, no Discord."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from adjutant.render import EMBED_TOTAL_LIMIT, embed_length
from adjutant.sweeps import render
from tests.standins import discord_rules


@dataclass
class Trial:
    number: int
    params: Mapping[str, Any]
    state: str = "done"
    value: float | None = None
    rung: int | None = None
    wandb_run_id: str | None = None
    job_id: str | None = None


@dataclass
class Sweep:
    id: str = "sweep-abc123"
    kind: str = "search"
    state: str = "running"
    method: str = "bayes"
    seed: int | None = 7
    parallel: int = 2
    run_cap: int | None = 12
    entity: str | None = "team"
    project: str | None = "proj"
    wandb_sweep_id: str | None = "ab12cd34"
    requested_by: str = "admin"
    note: str | None = None
    config: dict[str, Any] = field(default_factory=lambda: {"metric": {"name": "loss", "goal": "minimize"}})


GOAL = render.Goal("loss", minimize=True)


def outside_code(text: str) -> str:
    """What Discord renders as markdown (and parses for mentions): the text outside code spans, without the escaped
    characters (shown as they are)."""
    return re.sub(r"`[^`]*`", "", re.sub(r"\\.", "", text))


def trials() -> list[Trial]:
    return [
        Trial(1, {"x": 0.9, "opt": "adam"}, value=0.36, wandb_run_id="r1", job_id="j000001"),
        Trial(2, {"x": 0.35, "opt": "sgd"}, value=0.0025, wandb_run_id="r2", job_id="j000002"),
        Trial(3, {"x": 0.1, "opt": "adam"}, state="failed", job_id="j000003"),
        Trial(4, {"x": 0.6, "opt": "sgd"}, state="stopped", rung=1, value=0.09, job_id="j000004"),
        Trial(5, {"x": 0.2, "opt": "adam"}, state="running", job_id="j000005"),
    ]


def test_goal_of_reads_the_stored_config_and_says_which_way_is_better() -> None:
    assert render.goal_of('{"metric": {"name": "acc", "goal": "maximize"}}') == render.Goal("acc", minimize=False)
    assert render.goal_of({"metric": {"name": "loss"}}) == GOAL
    assert render.goal_of({"parameters": {}}) is None and render.goal_of("not json") is None
    best = render.best(trials(), render.Goal("loss", minimize=False))
    assert best is not None and best.number == 1


def test_card_counts_best_with_link_latest_and_buttons() -> None:
    card = render.card(Sweep(), trials(), goal=GOAL, base_url="http://127.0.0.1:9/", chart=True)
    assert card["title"] == "🔎 Sweep sweep-abc123 · bayes · running"
    counted = "**2** done · **1** running · **0** queued · **1** failed · **1** stopped early (of 12)"
    assert counted in card["description"]
    best = card["fields"][0]
    assert best["name"] == "Best so far"
    assert "**0.0025**" in best["value"] and "[trial 2](http://127.0.0.1:9/team/proj/runs/r2)" in best["value"]
    assert "x=0.35, opt=sgd" in best["value"]
    assert "stopped early (hyperband, rung 1)" in card["fields"][1]["value"]
    assert card["url"] == "http://127.0.0.1:9/team/proj/sweeps/ab12cd34"
    assert card["image"] == {"url": "attachment://sweep.png"}
    assert [b[0] for b in render.buttons("running")] == ["pause", "resume", "stop"]
    assert [b[3] for b in render.buttons("running")] == [False, True, False]
    assert [b[3] for b in render.buttons("paused")] == [True, False, False]
    assert render.buttons("finished") == [] and render.buttons("stopped") == []
    assert discord_rules.message_body({"embeds": [card]}, create=True) is None


def test_no_text_from_a_member_or_wandb_can_ping_or_format() -> None:
    evil = "@everyone **bold** <@123> [x](http://e.vil) `tick`"
    sweep = Sweep(note=evil, requested_by=evil, config={"metric": {"name": evil}})
    goal = render.goal_of(sweep.config)
    rows = [Trial(1, {evil: evil}, value=1.0)]
    card = render.card(sweep, rows, goal=goal)
    text = outside_code(card["description"] + "".join(f["value"] for f in card["fields"]))
    assert "@everyone" not in text and "<@123>" not in text and "**bold**" not in text and "[x](" not in text
    ended = render.ended_text(sweep, rows, goal, "<@42>")
    assert ended.startswith("<@42> Sweep `sweep-abc123`")
    assert "@everyone" not in outside_code(ended) and "<@123>" not in outside_code(ended)
    assert "@everyone" not in render.list_line(sweep, rows, goal, "#general")


def test_a_big_sweep_still_fits_discord() -> None:
    many = [Trial(i, {f"p{k}": "v" * 300 for k in range(20)}, value=float(i)) for i in range(1, 300)]
    card = render.card(Sweep(note="n" * 3000), many, goal=GOAL, chart=True)
    assert embed_length(card) <= EMBED_TOTAL_LIMIT
    assert discord_rules.message_body({"embeds": [card]}, create=True) is None


def test_preview_says_method_trials_cap_parallel_seed_and_worst_case() -> None:
    embed = render.preview(
        kind="search", method="random", space=["lr: log-uniform 1e-05..0.1", "bs: one of 32, 64"], trials=16,
        capped_by="No run_cap in the configuration: Adjutant stops after 16 trials (ADJUTANT_MAX_SWEEP); add run_cap.",
        parallel=2, seed=1234, gpus=1, time_limit=7200.0, gpu_hours=32.0, where="team/proj", metric=GOAL,
    )  # fmt: skip
    assert embed["title"] == "Sweep: random, 16 trials"
    text = embed["description"]
    assert "ADJUTANT\\_MAX\\_SWEEP" in text and "add run\\_cap" in text
    assert "Parallel: 2 at a time · seed 1234" in text and "worst case 32.0 GPU-hours" in text
    assert "• lr: log-uniform 1e-05..0.1" in text and "`team/proj`" in text
    agents = render.preview(
        kind="agents", method="agents", space=[], trials=None, capped_by=None, parallel=2, seed=None, gpus=0,
        time_limit=None, gpu_hours=None, where="team/proj/ab12cd34", metric=None,
    )  # fmt: skip
    assert agents["title"] == "W&B agents: 2 agents" and "at most 2 at once" in agents["description"]
    pool = render.card(
        Sweep(kind="agents", method=None, run_cap=None), [Trial(1, {"sweep": "team/proj/ab12cd34"})], goal=None
    )
    assert pool["title"] == "🔎 Sweep sweep-abc123 · W&B agents · running"
    assert pool["description"].startswith("Agent jobs: **1** done · **0** running")


def test_csv_has_every_trial_best_first_and_is_safe_in_a_spreadsheet() -> None:
    rows = [*trials(), Trial(6, {"x": 0.3, "opt": "=HYPERLINK(1)"}, value=0.0)]
    data = render.csv_bytes(rows, GOAL, {2: 12.34})
    table = list(csv.reader(io.StringIO(data.decode())))
    assert table[0] == ["trial", "state", "loss", "runtime_s", "job", "wandb_run", "opt", "x"]
    assert [r[0] for r in table[1:]] == ["6", "2", "4", "1", "3", "5"]  # best first; no value last, by number
    assert table[2][3] == "12.3" and table[2][4] == "j000002" and table[2][5] == "r2"
    assert table[1][6] == "'=HYPERLINK(1)"
    up = render.csv_bytes(rows, render.Goal("loss", minimize=False))
    assert [r[0] for r in csv.reader(io.StringIO(up.decode()))][1:4] == ["1", "4", "2"]


def test_csv_header_is_safe_and_a_long_csv_keeps_whole_rows(monkeypatch) -> None:
    """A metric or parameter name is user text too (quoted like a cell), and a CSV over the size limit leaves out
    the worst trials as whole rows, never half a row."""
    rows = [Trial(n, {"=cmd": "v" * 50}, value=float(n)) for n in range(1, 41)]
    table = list(csv.reader(io.StringIO(render.csv_bytes(rows, render.Goal("@loss", minimize=True)).decode())))
    assert table[0][2] == "'@loss" and table[0][6] == "'=cmd"
    whole = render.csv_bytes(rows, GOAL)
    monkeypatch.setattr(render, "CSV_LIMIT", len(whole) // 2)
    half = render.csv_bytes(rows, GOAL)
    assert 0 < len(half) <= len(whole) // 2 and half.endswith(b"\n")
    kept = list(csv.reader(io.StringIO(half.decode())))[1:]
    assert all(len(row) == 7 for row in kept) and [row[0] for row in kept] == [str(n) for n in range(1, len(kept) + 1)]


def test_important_params_rank_by_correlation_and_chart_is_a_png() -> None:
    rows = [Trial(i, {"x": x, "noise": n, "opt": o}, value=(x - 0.3) ** 2) for i, (x, n, o) in enumerate(
        [(0.3, 5, "a"), (0.5, 1, "b"), (0.7, 4, "a"), (0.9, 2, "b"), (1.1, 3, "a")], 1)]  # fmt: skip
    assert render.important_params(rows, GOAL)[0] == "x"
    png = render.chart_png(rows, GOAL)
    assert png is not None and png.startswith(b"\x89PNG")
    assert render.chart_png([Trial(1, {"x": 1}, state="running")], GOAL) is None
    assert render.chart_png(rows, None) is None


def test_runtime_and_sweep_url() -> None:
    assert render.runtime("2026-01-01T00:00:00+00:00", "2026-01-01T00:01:30+00:00") == 90.0
    assert render.runtime(None, "2026-01-01T00:01:30+00:00") is None
    assert render.sweep_url(None, "team", "proj", "abc") == "https://wandb.ai/team/proj/sweeps/abc"
    assert render.sweep_url(None, "team", "proj", None) is None
