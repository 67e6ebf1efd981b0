"""$diagnose's analysis (pure): trends, train-vs-validation gaps, NaN shares, pace; table tests."""

from __future__ import annotations

import math

import pytest

from adjutant.diagnose import (
    Gap,
    diagnose,
    diagnosis_embed,
    gaps,
    goal_of,
    nonfinite_share,
    pace,
    pick_metrics,
    trend,
    twin,
)
from adjutant.runs import RunInfo


def series(values: list[float], start: int = 0, every: int = 10) -> list[tuple[float, float]]:
    return [(float(start + i * every), v) for i, v in enumerate(values)]


DECAY = [1 / (1 + i) for i in range(40)]  # still improving at its end
FLAT_AFTER_12 = [1 / (1 + i) for i in range(12)] + [1 / 12] * 28
SAWTOOTH = [1.0 - 0.005 * i + (0.3 if i % 2 else -0.3) for i in range(40)]
BLOW_UP = [1 / (1 + i) for i in range(30)] + [0.05 * 2**i for i in range(10)]


@pytest.mark.parametrize(
    ("values", "goal", "verdict", "since"),
    [
        (DECAY, "min", "converging", None),
        ([1 - v for v in DECAY], "max", "converging", None),
        (FLAT_AFTER_12, "min", "plateaued", 110.0),
        ([2.0] * 20, "min", "plateaued", 0.0),
        (SAWTOOTH, "min", "oscillating", None),
        (BLOW_UP, "min", "diverging", None),
        ([1 - v for v in BLOW_UP], "max", "diverging", None),
        (DECAY[:7], "min", "too short", None),
        (DECAY[:7] + [math.nan] * 10, "min", "too short", None),
    ],
)
def test_trend(values: list[float], goal: str, verdict: str, since: float | None) -> None:
    found = trend(series(values), goal)  # type: ignore[arg-type]
    assert (found.verdict, found.since) == (verdict, since)


def test_a_plateau_says_since_when_and_the_best() -> None:
    found = trend(series(FLAT_AFTER_12), "min")
    assert found.describe() == f"plateaued since step 110 (best {1 / 12:.4g} at step 110, last {1 / 12:.4g})"


def test_an_accuracy_that_falls_is_diverging_a_loss_that_falls_is_not() -> None:
    falling = [1.0 - 0.001 * i for i in range(30)] + [0.97 - 0.1 * i for i in range(10)]
    assert trend(series(falling), "max").verdict == "diverging"
    assert trend(series(falling), "min").verdict == "converging"


@pytest.mark.parametrize(
    ("metric", "goal"),
    [("loss", "min"), ("val/acc", "max"), ("train_accuracy", "max"), ("val_error", "min"), ("reward", "max")],
)
def test_goal_of(metric: str, goal: str) -> None:
    assert goal_of(metric) == goal


def test_goal_of_the_ranking_metric_is_its_configured_goal() -> None:
    assert goal_of("score", "score", "min") == "min"


@pytest.mark.parametrize(
    ("key", "keys", "found"),
    [
        ("val_loss", ["loss", "val_loss"], "loss"),
        ("val/loss", ["train/loss", "val/loss"], "train/loss"),
        ("validation_acc", ["train_acc", "validation_acc"], "train_acc"),
        ("val_loss", ["val_loss"], None),
        ("loss", ["loss", "val_loss"], None),
    ],
)
def test_twin(key: str, keys: list[str], found: str | None) -> None:
    assert twin(key, keys) == found


def test_a_widening_validation_gap_reads_as_overfitting() -> None:
    train = series([1.0 - 0.02 * i for i in range(40)])
    val = series([1.0 - 0.02 * i if i < 20 else 0.6 + 0.01 * (i - 20) for i in range(40)])
    (gap,) = gaps({"loss": train, "val_loss": val}, {"loss": "min", "val_loss": "min"})
    assert (gap.val, gap.train) == ("val_loss", "loss")
    assert gap.now == pytest.approx(0.79 - 0.22)  # at the last step: val 0.79 against train 0.22
    assert gap.widening and gap.describe().endswith("widening: overfitting?")
    steady = Gap("val_acc", "acc", -0.02, -0.02, "max")
    assert not steady.widening


def test_nonfinite_share() -> None:
    assert nonfinite_share(series([1.0, math.nan, math.inf, 2.0])) == 0.5
    assert nonfinite_share([]) == 0.0


def test_pace_now_against_its_median() -> None:
    steady = [(float(i * 60), float(i * 60)) for i in range(20)]  # 60 steps a minute
    slowed = steady + [(1140.0 + i * 10, 1140.0 + 60 + i * 60) for i in range(1, 6)]  # then 10 a minute
    assert pace(steady).now == pytest.approx(60) and pace(steady).median == pytest.approx(60)  # type: ignore[union-attr]
    found = pace(slowed)
    assert found is not None and found.now == pytest.approx(10) and found.median == pytest.approx(60)
    assert "slowed to 17% of its median" in found.describe()
    assert pace([(0.0, 0.0), (1.0, 1.0)]) is None


def test_diagnose_and_its_embed_are_deterministic() -> None:
    history = {
        "loss": series(DECAY),
        "val_loss": series(FLAT_AFTER_12),
        "grad_norm": series([1.0, math.nan] * 10),
    }
    first = diagnose(history, [(float(i), float(i)) for i in range(30)], ranking="val_loss")
    assert first == diagnose(history, [(float(i), float(i)) for i in range(30)], ranking="val_loss")
    assert first.trends["loss"].verdict == "converging" and first.trends["val_loss"].verdict == "plateaued"
    assert first.nonfinite == {"grad_norm": 0.5}
    run = RunInfo(id="r1", name="resnet `@everyone`", state="running", url="https://wandb.ai/t/p/runs/r1")
    embed = diagnosis_embed(run, first, project="team/proj")
    assert embed["title"].startswith("🩺 Diagnosis of resnet")
    assert "@everyone" not in embed["title"].replace("@\u200beveryone", "")
    assert "**val\\_loss**: plateaued since step 110" in embed["description"]
    names = [f["name"] for f in embed["fields"]]
    assert names == ["Validation against training", "NaN or Infinity", "Pace"]


def test_pick_metrics_puts_the_ranking_metric_and_losses_first() -> None:
    keys = ["lr", "_runtime", "acc", "val_loss", "loss", "system/gpu", "val_acc", "epoch"]
    assert pick_metrics(keys, "val_loss", limit=4) == ["val_loss", "loss", "acc", "val_acc"]
