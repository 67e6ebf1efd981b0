"""Test-only: point a bot run as a subprocess at the Discord stand-in.

The tests put this folder on PYTHONPATH and set ADJUTANT_TEST_DISCORD_BASE and
ADJUTANT_TEST_DISCORD_GATEWAY; without those variables this does nothing. discord.py is patched
when something imports it, not here: the job supervisors and scripts (which inherit this environment)
never import it, and must not pay for it.
"""

import importlib.abc
import importlib.machinery
import os
import sys


class _PatchDiscordOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "discord":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        original = spec.loader.exec_module

        def exec_module(module):
            original(module)
            import yarl

            base = os.environ["ADJUTANT_TEST_DISCORD_BASE"]
            module.http.Route.BASE = f"{base}/api/v10"
            module.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(os.environ["ADJUTANT_TEST_DISCORD_GATEWAY"])
            module.asset.Asset.BASE = f"{base}/cdn"

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if os.environ.get("ADJUTANT_TEST_DISCORD_BASE"):
    sys.meta_path.insert(0, _PatchDiscordOnImport())
