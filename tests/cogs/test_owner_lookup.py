"""Commands that arrive together ask Discord who owns the application once, not once each (discord.py keeps the
owner only after Discord answered: 40 launches at once used to send 40 ``GET /oauth2/applications/@me``)."""

from __future__ import annotations

import asyncio

from tests.cogs.test_experiments import acks, launch_env
from tests.conftest import eventually
from tests.standins.discord_standin import DiscordStandIn


async def test_eight_launches_at_once_ask_for_the_owner_once(start_adjutant, discord_standin: DiscordStandIn, out_dir):
    async with start_adjutant({**launch_env(), "ADJUTANT_MAX_CONCURRENT": "8"}) as bot:
        assert bot.owner_id is None and not bot.owner_ids, "nobody asked yet"
        before = len(discord_standin.rest("GET", "/oauth2/applications/@me"))
        await asyncio.gather(*(discord_standin.post(f'$experiment {{"n": {n}}}', author="admin") for n in range(8)))
        await eventually(lambda: len(acks(discord_standin)) == 8, timeout=20)
        asked = len(discord_standin.rest("GET", "/oauth2/applications/@me")) - before
        assert asked == 1, f"{asked} owner lookups for 8 launches"
        assert bot.owner_id is not None or bot.owner_ids, "the answer is kept"
