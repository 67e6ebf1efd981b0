"""Test-only: point a bot run as a subprocess at the Discord stand-in.

The tests put this folder on PYTHONPATH and set ADJUTANT_TEST_DISCORD_BASE and
ADJUTANT_TEST_DISCORD_GATEWAY; without those variables this does nothing.
"""

import os

if os.environ.get("ADJUTANT_TEST_DISCORD_BASE"):
    import discord
    import yarl

    _base = os.environ["ADJUTANT_TEST_DISCORD_BASE"]
    discord.http.Route.BASE = f"{_base}/api/v10"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(os.environ["ADJUTANT_TEST_DISCORD_GATEWAY"])
    discord.asset.Asset.BASE = f"{_base}/cdn"
