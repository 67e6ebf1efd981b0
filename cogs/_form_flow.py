"""Launch forms: open the modal from a job, a W&B run or the member's last job; launch what a valid form says
(a base of the Experiments cog; the modal and its buttons are in _launch_form)."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import discord

from adjutant.access import may_request, refusal
from adjutant.admission import Verdict
from adjutant.cogs._approval_flow import ApprovalFlow
from adjutant.cogs._launch_form import EditAgain, LaunchForm
from adjutant.forms import apply_form, form_keys
from adjutant.hparams import (
    HParamsError,
    diff,
)
from adjutant.jobs import Job
from adjutant.render import MESSAGE_LIMIT, code_safe, truncate

log = logging.getLogger(__name__)


class FormFlow(ApprovalFlow):
    """The launch forms' flow."""

    # --- launch forms -------------------------------------------------------------------------------
    async def open_form(self, interaction: discord.Interaction, kind: str, source_id: str | None) -> None:
        """Open the launch form (a modal) prefilled from a job, a W&B run, or (``new``) the member's last job."""
        if not self.serves(interaction.guild):
            return
        off = self.launching_off(interaction.channel)
        if off is not None:
            await interaction.response.send_message(off, ephemeral=True)
            return
        user = interaction.user
        if not await self.authorized(user, interaction.channel) and not may_request(user, self.settings):
            await self.audit("refused", user, interaction.channel, detail="launch form")
            await interaction.response.send_message(refusal(self.rule_for(interaction.channel)), ephemeral=True)
            return
        source = await self._form_source(interaction, kind, source_id)
        if source is None:
            return
        params, origin, gpus, limit = source
        history = [job.params for job in await self.scheduler.recent(50)]
        keys = form_keys(params, history, self.schema)
        title = "Launch an experiment" if kind == "new" else f"Rerun {origin.replace('`', '')} with edits"
        await interaction.response.send_modal(self._form(title, params, keys, origin, gpus, limit))

    def _form(
        self,
        title: str,
        source: dict[str, Any],
        keys: list[str],
        origin: str,
        gpus: int,
        limit: float | None,
        typed: tuple[dict[str, str], str] | None = None,
    ) -> LaunchForm:
        async def submit(interaction: discord.Interaction, fields: dict[str, str], paragraph: str) -> None:
            try:
                params = apply_form(source, keys, fields, paragraph)
                prepared, defaults = self._prepare(params)
            except HParamsError as error:
                again = EditAgain(
                    interaction.user.id,
                    lambda: self._form(title, source, keys, origin, gpus, limit, (fields, paragraph)),
                )
                typed_fields = "".join(f"{code_safe(k)}: {code_safe(v)}\n" for k, v in fields.items())
                recap = f"```\n{typed_fields}{code_safe(truncate(paragraph, 1400))}\n```"
                text = f"Not launched: {error}\nWhat you typed (Edit again reopens the form with it):\n{recap}"
                await interaction.response.send_message(truncate(text, MESSAGE_LIMIT), view=again, ephemeral=True)
                return
            await self._launch_form(interaction, source, prepared, defaults, origin, gpus, limit)

        return LaunchForm(title, source, keys, submit, typed)

    async def _form_source(
        self, interaction: discord.Interaction, kind: str, source_id: str | None
    ) -> tuple[dict[str, Any], str, int, float | None] | None:
        """(hyperparameters, where from, GPUs, time limit) of a form's source; None when answered already."""
        default_limit = None if self.settings.time_limit is None else self.settings.time_limit * 60
        if kind == "job" and source_id is not None:
            job = await self.scheduler.get(source_id)
            if job is None:
                await interaction.response.send_message("That job is no longer known.", ephemeral=True)
                return None
            return dict(job.params), f"job `{job.id}`", job.gpus, job.time_limit
        if kind == "run" and source_id is not None:
            route = self.rule_for(interaction.channel)
            watcher = self.services.watcher_of(route.project, route.entity)
            run = None if watcher is None else watcher.latest.get(source_id)
            if run is None and watcher is not None:
                try:  # the form must open within Discord's 3 seconds: W&B gets two
                    run = await asyncio.wait_for(watcher.find(source_id), 2.0)
                except Exception as error:
                    log.info("no run %s for a form: %s", source_id, error)
                    text = f"W&B did not answer in time; try again, or `{self.command_prefix()}rerun {source_id}`."
                    await interaction.response.send_message(text, ephemeral=True)
                    return None
            if run is None:
                await interaction.response.send_message(f"No W&B run `{code_safe(source_id)}`.", ephemeral=True)
                return None
            return dict(run.public_config()), f"W&B run `{run.id}`", self.settings.job_gpus, default_limit
        channel_id = getattr(interaction.channel, "id", None)
        mine = [j for j in await self.scheduler.recent(50) if j.requested_by_id == interaction.user.id]
        last = next((j for j in mine if j.channel_id == channel_id), None)
        if last is not None:
            return dict(last.params), f"your last job `{last.id}`", last.gpus, last.time_limit
        return {}, "an empty form", self.settings.job_gpus, default_limit

    async def _launch_form(
        self,
        interaction: discord.Interaction,
        source: dict[str, Any],
        params: dict[str, Any],
        defaults: dict[str, Any],
        origin: str,
        gpus: int,
        limit: float | None,
    ) -> None:
        """A valid form: the diff against its source, then the usual rules (access, quota, approval)."""
        admission = await self._admit(interaction.user, interaction.channel, gpus, 1)
        if admission.verdict == Verdict.REFUSED:
            await self.audit("refused", interaction.user, interaction.channel, detail=f"form: {admission.text}")
            text = admission.text if admission.text != "not allowed" else refusal(self.rule_for(interaction.channel))
            await interaction.response.send_message(text, ephemeral=True)
            return
        changed = "\n".join(diff(source, params)) or "(no changes)"
        note = f"From {origin}:\n```diff\n{code_safe(truncate(changed, 1500))}\n```"
        request = self._request_in(interaction.channel, params, interaction.user, None, gpus=gpus, time_limit=limit)

        async def ack(job: Job, text: str) -> None:
            await self._ack_interaction(interaction, job, defaults, text)

        await self._launch_one(interaction, request, admission, detail=f"form, from {origin}", note=note, ack=ack)

    async def _rerun_menu(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Right-click → Apps → Rerun on an end report or a run card: its launch form."""
        for row in message.components:
            for item in getattr(row, "children", []):
                found = re.fullmatch(r"adjutant:edit:(job|run):(.+)", getattr(item, "custom_id", None) or "")
                if found:
                    await self.open_form(interaction, found[1], found[2])
                    return
        title = message.embeds[0].title if message.embeds else ""
        job = re.search(r"Experiment (j[a-z0-9]{6})\b", title or "")
        if job is not None:
            await self.open_form(interaction, "job", job[1])
            return
        await interaction.response.send_message(
            "Rerun works on an experiment's end report or a run card.", ephemeral=True
        )
