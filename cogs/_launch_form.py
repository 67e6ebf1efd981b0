"""Launch forms: the modal (four fields and the whole JSON), the persistent "Rerun with edits" button under end
reports and run cards, and the "Edit again" button under a refused form. What a form launches is
:func:`adjutant.forms.apply_form`; the Experiments cog decides and launches."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Self

import discord

from adjutant.forms import FIELD_LIMIT, field_text, paragraph_text
from adjutant.render import truncate

#: (interaction, {key: field text}, paragraph) → launch (or answer why not).
Submit = Callable[[discord.Interaction, dict[str, str], str], Awaitable[None]]
PARAGRAPH = "adjutant-json"


class LaunchForm(discord.ui.Modal):
    """Up to four fields for the most-varied (or declared) hyperparameters, then the whole JSON."""

    def __init__(
        self,
        title: str,
        source: Mapping[str, Any],
        keys: Sequence[str],
        submit: Submit,
        typed: tuple[Mapping[str, str], str] | None = None,
    ) -> None:
        super().__init__(title=truncate(title, 45), timeout=900)
        self.keys = list(keys)
        self.submit = submit
        fields, paragraph = typed if typed is not None else ({}, paragraph_text(source))
        self.inputs: dict[str, discord.ui.TextInput[Any]] = {}
        for index, key in enumerate(self.keys):
            text = fields.get(key, field_text(source.get(key)))
            item: discord.ui.TextInput[Any] = discord.ui.TextInput(
                label=truncate(key, 45),
                custom_id=f"adjutant-field-{index}",
                default=truncate(text, FIELD_LIMIT) or None,
                required=False,
                max_length=FIELD_LIMIT,
            )
            self.inputs[key] = item
            self.add_item(item)
        self.paragraph: discord.ui.TextInput[Any] = discord.ui.TextInput(
            label="All hyperparameters (JSON)",
            custom_id=PARAGRAPH,
            style=discord.TextStyle.paragraph,
            default=truncate(paragraph, FIELD_LIMIT),
            max_length=FIELD_LIMIT,
        )
        self.add_item(self.paragraph)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        fields = {key: item.value or "" for key, item in self.inputs.items()}
        await self.submit(interaction, fields, self.paragraph.value or "")


class EditButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"adjutant:edit:(?P<kind>job|run):(?P<id>[A-Za-z0-9_.-]{1,64})",
):
    """ "Rerun with edits" under an end report or a run card; works after a restart (the id is in the custom id)."""

    def __init__(self, kind: str, source_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                label="Rerun with edits",
                style=discord.ButtonStyle.secondary,
                custom_id=f"adjutant:edit:{kind}:{source_id}",
            )
        )
        self.kind = kind
        self.source_id = source_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Self:
        return cls(match["kind"], match["id"])

    async def callback(self, interaction: discord.Interaction) -> None:
        from adjutant.cogs.experiments import Experiments  # the cog imports this module

        cog = interaction.client.get_cog("Experiments")  # type: ignore[attr-defined]
        if not isinstance(cog, Experiments):
            await interaction.response.send_message("Experiment launching is not loaded.", ephemeral=True)
            return
        await cog.forms.open(interaction, self.kind, self.source_id)


def edit_view(kind: str, source_id: str) -> discord.ui.View | None:
    """The "Rerun with edits" button, when the id fits a custom id."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", source_id):
        return None
    view = discord.ui.View(timeout=None)
    view.add_item(EditButton(kind, source_id))
    return view


class EditAgain(discord.ui.View):
    """Under a refused form: reopens it with what was typed (only for the member who typed it)."""

    def __init__(self, owner_id: int, reopen: Callable[[], discord.ui.Modal]) -> None:
        super().__init__(timeout=900)
        self.owner_id = owner_id
        self.reopen = reopen

    @discord.ui.button(label="Edit again", style=discord.ButtonStyle.primary)
    async def again(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        if interaction.user.id != self.owner_id:
            await interaction.response.send_message("This form is someone else's.", ephemeral=True)
            return
        await interaction.response.send_modal(self.reopen())
