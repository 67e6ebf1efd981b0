"""The status card (``$status pin``): what it shows, and when it is worth an edit. Pure.

The card shows the last successful W&B poll of each project and the scheduler's last pass as Discord relative
timestamps (``<t:…:R>``), which age on screen without edits: a card that keeps saying "12 minutes ago" is itself the
sign that the bot stopped. It is edited at most once a minute, and only when something shown changed: a state, an
error, the queue, the GPUs; a timestamp alone is refreshed at most every ``STAMP_REFRESH_SECONDS``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from adjutant.render import code_safe, fit_embed, plain, truncate

#: At most one edit per card in this many seconds.
EDIT_SECONDS = 60.0
#: A card whose only change is newer timestamps is edited this seldom (the timestamps age on screen meanwhile).
STAMP_REFRESH_SECONDS = 600.0


@dataclass(frozen=True)
class Part:
    """One thing the bot depends on: a W&B project, the scheduler, a cluster."""

    name: str
    ok: bool
    #: time.time() of its last success (None: never yet, or not applicable).
    last_success: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class Snapshot:
    parts: tuple[Part, ...]
    queued: int
    running: int
    gpus_free: int | None = None
    gpus_total: int | None = None

    @property
    def healthy(self) -> bool:
        return all(part.ok for part in self.parts)

    @property
    def starting(self) -> bool:
        """Every part answers, but one has not had its first success yet (right after a start)."""
        return self.healthy and any(part.last_success is None for part in self.parts)

    def signature(self) -> str:
        """What counts as a change: every state, error and count; not the timestamps."""
        shown = {
            "parts": [(p.name, p.ok, p.error, p.last_success is None) for p in self.parts],
            "counts": (self.queued, self.running, self.gpus_free, self.gpus_total),
        }
        return hashlib.sha256(json.dumps(shown, sort_keys=True).encode()).hexdigest()[:16]

    def stamps(self) -> tuple[float | None, ...]:
        return tuple(p.last_success for p in self.parts)


def edit_due(
    snapshot: Snapshot,
    *,
    now: float,
    last_edit: float,
    last_signature: str,
    last_stamps: Sequence[float | None],
) -> bool:
    """Whether the card should be edited now (see the module's rule)."""
    if now - last_edit < EDIT_SECONDS:
        return False
    if snapshot.signature() != last_signature:
        return True
    return tuple(last_stamps) != snapshot.stamps() and now - last_edit >= STAMP_REFRESH_SECONDS


def status_card(snapshot: Snapshot, *, prefix: str) -> dict[str, object]:
    """The card: green while every part answers, yellow "starting" until each has answered once (right after a
    start), red with the errors while one does not."""
    lines = []
    for part in snapshot.parts:
        if not part.ok:
            icon = "🔴"
        elif part.last_success is None:
            icon = "🟡"
        else:
            icon = "🟢"
        if part.last_success is not None:
            when = f"last success <t:{int(part.last_success)}:R>"
        else:
            when = "starting" if part.ok else "no success yet"
        line = f"{icon} **{plain(truncate(part.name, 80))}** · {when}"
        if not part.ok and part.error:
            line += f"\n  `{code_safe(truncate(part.error, 300))}`"
        lines.append(line)
    counts = f"**{snapshot.running}** running · **{snapshot.queued}** queued"
    if snapshot.gpus_total is not None:
        counts += f" · **{snapshot.gpus_free}** of {snapshot.gpus_total} GPUs free"
    healthy = snapshot.healthy
    broken = ", ".join(plain(truncate(p.name, 80)) for p in snapshot.parts if not p.ok)
    if not healthy:
        title, colour = f"🔴 Adjutant: {truncate(broken, 200)} not answering", 0xE74C3C
    elif snapshot.starting:
        waiting = ", ".join(plain(truncate(p.name, 80)) for p in snapshot.parts if p.last_success is None)
        title, colour = f"🟡 Adjutant: starting (waiting for {truncate(waiting, 180)})", 0xF1C40F
    else:
        title, colour = "🟢 Adjutant: all good", 0x2ECC71
    return fit_embed(
        {
            "title": title,
            "color": colour,
            "description": "\n".join([*lines, "", counts]),
            "footer": {"text": f"status card: edited in place (at most once a minute) · {prefix}status for details"},
        }
    )
