"""The alert card's buttons that act on jobs: Stop (cancel), Rerun (a launch door), Retry canary, Resume / Drop a
held sweep, Keep running (a policy's pending stop is off). Each checks the rule of the alert's *job's* route at the
click. Mute is the alert's, not a job's: the cog's :meth:`~adjutant._cog.AdjutantCog.mute_alert`. And the policy's
stops themselves (ADJUTANT_ALERT_POLICY), taken at their deadline by :meth:`AlertActions.act_due`. Composed into the
Experiments cog."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import discord

from adjutant._cog import NO_PINGS, AdjutantCog, asker_of
from adjutant.alerts import (
    JOBS_OUTBOX,
    KIND_WORDS,
    ActionState,
    Alert,
    AlertKind,
    AlertPolicy,
    claim_action,
    decide_action,
    due_actions,
    enqueue_announcement,
    episode_over,
    finish_action,
    keep_running,
    undecided,
)
from adjutant.clock import iso_seconds, utcnow
from adjutant.cogs._alert_views import alert_view
from adjutant.cogs._announcer import action_text
from adjutant.cogs._launch_replies import LaunchReplies
from adjutant.jobs import Job, JobState, SweepHold
from adjutant.launch_render import cancel_text
from adjutant.launching import Asker, Launching, Refused
from adjutant.render import format_duration, plain, truncate
from adjutant.store import Store

log = logging.getLogger(__name__)


class AlertActions:
    """What the alert card's Stop / Rerun / Retry canary / Resume / Drop do."""

    def __init__(self, cog: AdjutantCog, launching: Launching, replies: LaunchReplies, runs: Store) -> None:
        self.cog = cog
        self.launching = launching
        self.replies = replies
        self.runs = runs
        #: ADJUTANT_ALERT_POLICY: which alerts stop their job, after how long.
        self.policy = AlertPolicy.for_routes(cog.settings.alert_policy, cog.settings.routes)

    async def press(self, interaction: discord.Interaction, action: str, alert_id: int) -> None:
        if action == "mute":
            await self.cog.mute_alert(interaction, self.runs, alert_id)
            return
        if not self.cog.serves(interaction.guild):
            return
        alert = await asyncio.to_thread(self.runs.alert, alert_id)
        if alert is None:
            await interaction.response.send_message("That alert is no longer known.", ephemeral=True)
            return
        route = self.replies.route_here(interaction.channel)
        asker = await asker_of(self.cog.bot, self.cog.settings, interaction, route)
        job = await self.launching.scheduler.get(alert.job_id) if alert.job_id else None
        if action == "rerun":
            outcome = await self.launching.alert_rerun(asker, job, alert.params, prefix=self.cog.command_prefix())
            await self.replies.answer(interaction, outcome, prefix=self.cog.command_prefix())
            return
        if job is None:
            await interaction.response.send_message(GONE.get(action, "That job is no longer known."), ephemeral=True)
            return
        refused = await self.launching.may_act(asker, job, BUTTON_WORDS.get(action, action))
        if refused is not None:
            await interaction.response.send_message(refused.text, ephemeral=True)
            return
        if action == "stop":
            await self._stop(interaction, asker, job)
        elif action == "keep":
            await self._keep(interaction, asker, job, alert)
        elif action == "canary":
            await self._retry_canary(interaction, job)
        elif action in ("resume", "drop"):
            await self._decide_sweep(interaction, asker, job, action)

    async def _stop(self, interaction: discord.Interaction, asker: Asker, job: Job) -> None:
        result = await self.launching.cancel(asker, job.id)
        if isinstance(result, Refused):
            await interaction.response.send_message(result.text, ephemeral=True)
            return
        grace = self.cog.settings.cancel_grace_seconds
        text = cancel_text(result, job.id, self.cog.command_prefix(), grace_seconds=grace)
        await interaction.response.send_message(text, allowed_mentions=NO_PINGS)

    async def _keep(self, interaction: discord.Interaction, asker: Asker, job: Job, alert: Alert) -> None:
        who = plain(truncate(str(interaction.user), 64))

        def keep() -> bool:
            with self.runs.transaction() as db:
                return keep_running(db, alert.id, who)

        if not await asyncio.to_thread(keep):
            now = await asyncio.to_thread(self.runs.alert, alert.id)
            state = now.action_state if now is not None else None
            said: dict[str, str] = {
                ActionState.KEPT: f"Already kept running (by {now.action_note if now else '?'}).",
                ActionState.ACTING: "Too late: the policy is stopping it.",
                ActionState.DONE: "Too late: the policy's deadline has passed.",
            }
            await interaction.response.send_message(
                said.get(state or "", "Nothing is pending for this alert."), ephemeral=True
            )
            return
        await self.launching.audit("kept running", asker, target=job.id, detail=f"alert {alert.id} ({alert.kind})")
        text = f"Job `{job.id}` keeps running, by {who}: the policy does not stop it for this alert."
        await interaction.response.send_message(text, allowed_mentions=NO_PINGS)
        await self._show_kept(interaction.message, job, alert.id)

    async def _show_kept(self, message: discord.Message | None, job: Job, alert_id: int) -> None:
        """The card says it was kept and loses its Keep running button (best effort: the answer above is what
        counts)."""
        kept = await asyncio.to_thread(self.runs.alert, alert_id)
        if message is None or kept is None or not message.embeds:
            return
        embed = message.embeds[0].to_dict()
        lines = [line for line in str(embed.get("description") or "").splitlines() if not line.startswith("**Policy")]
        embed["description"] = "\n".join([*lines, action_text(kept)])
        try:
            await message.edit(embed=discord.Embed.from_dict(embed), view=alert_view(kept, job))
        except discord.HTTPException as error:
            log.warning("alert card %s not updated after Keep running: %s", alert_id, error)

    # --- the policy's stops ------------------------------------------------------------------------
    async def act_due(self, now: dt.datetime | None = None) -> int:
        """Decide new alerts' actions (anchored at their creation: a card not sent yet gets the same deadline), then
        take each due one: one compare-and-set claims it, the job is cancelled through the scheduler's usual cancel,
        and its thread is told. An action a stopped bot left claimed is taken up again (the cancel is idempotent), so a
        restart acts once, at the original deadline. Returns how many jobs were stopped."""
        now = now or utcnow()  # with no policy too: alerts are decided "none" now, never stopped by a later policy
        due = await asyncio.to_thread(self._decide_and_find_due, now)
        stopped = 0
        for alert in due:
            stopped += await self._act(alert, now)
        return stopped

    def _decide_and_find_due(self, now: dt.datetime) -> list[Alert]:
        if not self.runs.query(ANYTHING_TO_DO, (iso_seconds(now),)):
            return []  # the usual answer, every second: read only, no write lock taken
        with self.runs.transaction() as db:
            for alert in undecided(db):
                decide_action(db, alert, self.policy)
            return due_actions(db, now)

    async def _act(self, alert: Alert, now: dt.datetime) -> int:
        job = await self.launching.scheduler.get(alert.job_id) if alert.job_id else None
        why = self._why(alert, now)

        def claim() -> str:
            """(thread) ``act``, ``tell`` (cancelled by this action before a restart: only its note is due), ``moot``
            (ended job, episode over: done, nothing stopped) or ``lost`` (not ours)."""
            with self.runs.transaction() as db:
                if alert.action_state == ActionState.PENDING and not claim_action(db, alert.id):
                    return "lost"
                cancelled_by = (job.cancelled_by if job is not None else None) or ""
                if alert.action_state == ActionState.ACTING and cancelled_by.startswith(POLICY_BY):
                    return "tell"
                if job is None or job.state not in (JobState.STARTING, JobState.RUNNING) or episode_over(db, alert):
                    finish_action(db, alert.id, "nothing to stop")
                    return "moot"
                return "act"

        verdict = await asyncio.to_thread(claim)
        if verdict not in ("act", "tell") or job is None:
            return 0
        if verdict == "act":
            result = await self.launching.scheduler.cancel(job.id, f"{POLICY_BY}{why})")
            log.info("policy stop of job %s (alert %s): %s", job.id, alert.id, result.outcome)

        def told() -> None:
            with self.runs.transaction() as db:
                finish_action(db, alert.id, why)
                embed = {
                    "title": truncate(f"⏹️ Job {job.id} stopped: {why} (policy)", 256),
                    "description": f"ADJUTANT_ALERT_POLICY: {alert.action_note}. Its end report follows.",
                    "color": 0xE67E22,
                }
                enqueue_announcement(
                    db, JOBS_OUTBOX, job.wandb_run_id, "policy-stop", embed, None, job.message_id, job.thread_id
                )

        await asyncio.to_thread(told)
        return 1 if verdict == "act" else 0

    def _why(self, alert: Alert, now: dt.datetime) -> str:
        """``GPU idle for 31m 00s``, ``no progress for …``, ``NaN in loss``, ``watch rule on val_loss``."""
        words = KIND_WORDS.get(alert.kind, str(alert.kind))
        settings = self.cog.settings
        window = {
            AlertKind.GPU_IDLE: settings.gpu_idle_minutes,
            AlertKind.NO_PROGRESS: settings.stall_minutes,
            AlertKind.STALLED: settings.stall_minutes,
        }.get(alert.kind)
        if window is not None and alert.created_at is not None:
            return f"{words} for {format_duration((now - alert.created_at).total_seconds() + window * 60)}"
        if alert.metric and alert.kind in (AlertKind.NONFINITE, AlertKind.RULE):
            return f"{words} {'in' if alert.kind is AlertKind.NONFINITE else 'on'} {truncate(alert.metric, 60)}"
        return words

    async def _retry_canary(self, interaction: discord.Interaction, job: Job) -> None:
        if not await self.launching.scheduler.retry_canary(job):
            await interaction.response.send_message("That canary is not waiting for a retry.", ephemeral=True)
            return
        who = plain(truncate(str(interaction.user), 64))
        text = f"Canary `{job.id}` of sweep `{job.sweep_id}` runs again (attempt {job.attempt + 1}), by {who}."
        await interaction.response.send_message(text, allowed_mentions=NO_PINGS)

    async def _decide_sweep(self, interaction: discord.Interaction, asker: Asker, job: Job, action: str) -> None:
        if job.sweep_id is None:
            await interaction.response.send_message("That sweep is no longer known.", ephemeral=True)
            return
        decision = SweepHold.RESUMED if action == "resume" else SweepHold.DROPPED
        before, changed = await self.launching.scheduler.decide_sweep(job.sweep_id, decision, str(interaction.user))
        await self.launching.audit("sweep decided", asker, target=job.sweep_id, detail=decision)
        if before != SweepHold.HELD:
            await interaction.response.send_message(f"Sweep `{job.sweep_id}` was already {before}.", ephemeral=True)
            return
        who = plain(truncate(str(interaction.user), 64))
        verb = "started again" if decision == SweepHold.RESUMED else "cancelled"
        text = f"Sweep `{job.sweep_id}` {decision} by {who}: {changed} queued cell(s) {verb}."
        await interaction.response.send_message(text, allowed_mentions=NO_PINGS)


#: How a policy's cancel names who cancelled (``cancelled_by``): "Adjutant (policy: GPU idle for 31m 00s)".
POLICY_BY = "Adjutant (policy: "
#: Is there an alert to decide, or an action due (the partial index ``alerts_actions`` answers it)?
ANYTHING_TO_DO = (
    "SELECT 1 FROM alerts WHERE action_state IS NULL OR (action_state='pending' AND action_at<=?)"
    " OR action_state='acting' LIMIT 1"
)
#: The answer when the alert's job is gone (or was never Adjutant's).
GONE = {
    "stop": "Only jobs Adjutant launched can be stopped.",
    "canary": "That canary is not waiting for a retry.",
    "resume": "That sweep is no longer known.",
    "drop": "That sweep is no longer known.",
    "keep": "Only jobs Adjutant launched can be stopped, so there is nothing to keep running.",
}
#: What each alert button does, for refusals.
BUTTON_WORDS = {
    "stop": "stop jobs",
    "rerun": "launch experiments",
    "canary": "retry canaries",
    "resume": "resume sweeps",
    "drop": "drop sweeps",
    "keep": "keep jobs running",
}
