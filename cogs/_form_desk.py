"""Launch forms as a door: open the modal from a job, a W&B run or the member's last job (``/experiment`` alone,
Rerun with edits, right-click → Rerun), and launch what a valid form says through the launch service. A refused form
keeps what was typed (Edit again). Composed into the Experiments cog."""

from __future__ import annotations

import logging
import re

import discord

from adjutant._cog import AdjutantCog, asker_of
from adjutant.cogs._launch_form import EditAgain, LaunchForm
from adjutant.cogs._launch_replies import LaunchReplies
from adjutant.forms import apply_form
from adjutant.hparams import HParamsError
from adjutant.launching import FormSource, Launching, Refused
from adjutant.render import MESSAGE_LIMIT, code_safe, truncate

log = logging.getLogger(__name__)


class FormDesk:
    """Opens launch forms and launches what they say."""

    def __init__(self, cog: AdjutantCog, launching: Launching, replies: LaunchReplies) -> None:
        self.cog = cog
        self.launching = launching
        self.replies = replies

    async def open(self, interaction: discord.Interaction, kind: str, source_id: str | None) -> None:
        """Open the launch form (a modal) prefilled from a job, a W&B run, or (``new``) the member's last job."""
        if not self.cog.serves(interaction.guild):
            return
        route = self.replies.route_here(interaction.channel)
        asker = await asker_of(self.cog.bot, self.cog.settings, interaction, route)
        source = await self.launching.form_source(asker, kind, source_id, prefix=self.cog.command_prefix())
        if isinstance(source, Refused):
            await interaction.response.send_message(source.text, ephemeral=True)
            return
        title = "Launch an experiment" if kind == "new" else f"Rerun {source.origin.replace('`', '')} with edits"
        await interaction.response.send_modal(self._form(title, source))

    def _form(self, title: str, source: FormSource, typed: tuple[dict[str, str], str] | None = None) -> LaunchForm:
        async def submit(interaction: discord.Interaction, fields: dict[str, str], paragraph: str) -> None:
            try:
                params = apply_form(source.params, source.keys, fields, paragraph)
                self.launching.prepare(params)  # a form that does not validate reopens with what was typed
            except HParamsError as error:
                await self._refused_form(interaction, title, source, fields, paragraph, str(error))
                return
            route = self.replies.route_here(interaction.channel)
            asker = await asker_of(self.cog.bot, self.cog.settings, interaction, route)
            outcome = await self.launching.form(asker, source, params)
            await self.replies.answer(interaction, outcome, prefix=self.cog.command_prefix())

        return LaunchForm(title, source.params, source.keys, submit, typed)

    async def _refused_form(
        self,
        interaction: discord.Interaction,
        title: str,
        source: FormSource,
        fields: dict[str, str],
        paragraph: str,
        error: str,
    ) -> None:
        again = EditAgain(interaction.user.id, lambda: self._form(title, source, (fields, paragraph)))
        typed_fields = "".join(f"{code_safe(k)}: {code_safe(v)}\n" for k, v in fields.items())
        recap = f"```\n{typed_fields}{code_safe(truncate(paragraph, 1400))}\n```"
        text = f"Not launched: {error}\nWhat you typed (Edit again reopens the form with it):\n{recap}"
        await interaction.response.send_message(truncate(text, MESSAGE_LIMIT), view=again, ephemeral=True)

    async def rerun_menu(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Right-click → Apps → Rerun on an end report or a run card: its launch form."""
        for row in message.components:
            for item in getattr(row, "children", []):
                found = re.fullmatch(r"adjutant:edit:(job|run):(.+)", getattr(item, "custom_id", None) or "")
                if found:
                    await self.open(interaction, found[1], found[2])
                    return
        title = message.embeds[0].title if message.embeds else ""
        job = re.search(r"Experiment (j[a-z0-9]{6})\b", title or "")
        if job is not None:
            await self.open(interaction, "job", job[1])
            return
        await interaction.response.send_message(
            "Rerun works on an experiment's end report or a run card.", ephemeral=True
        )
