"""What ``$subscriptions`` says a subscription sends, in words (pure)."""

from __future__ import annotations

from adjutant.cogs.rules import subscription_text


def test_each_kind_of_event_is_said_once() -> None:
    assert subscription_text("team/proj", ("finished", "crashed")) == "about runs of `team/proj`: finished, crashed"
    assert subscription_text("team/proj", ("finished", "sweeps")) == (
        "about runs of `team/proj`: finished, and when each sweep of `team/proj` ends"
    )
    assert subscription_text("team/proj", ("sweeps",)) == "when each sweep of `team/proj` ends"
    assert subscription_text("", ("mine",)) == "when each of your jobs ends and when your queue is done"
