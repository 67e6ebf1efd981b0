"""``python -m adjutant --check``: what a first start would trip over, each with its fix.

Every check has its own timeout, so an unreachable Discord or W&B is a failed check with its own
message, never a hang. Discord is asked over REST only (log in, application flags, guilds,
channels, the bot's member); nothing is posted.
"""

from __future__ import annotations

import asyncio
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import discord

from adjutant.settings import Settings

CHECK_TIMEOUT = 15.0
INVITE_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    embed_links=True,
    attach_files=True,
    read_message_history=True,
    add_reactions=True,
    create_public_threads=True,
    send_messages_in_threads=True,
    pin_messages=True,
)

#: What Adjutant does in a configured channel, the permission it needs for it, and what breaks without it.
CHANNEL_NEEDS: tuple[tuple[str, str, str], ...] = (
    ("view_channel", "View Channel", "it cannot see the channel's commands"),
    ("send_messages", "Send Messages", "it cannot answer or report"),
    ("embed_links", "Embed Links", "reports and cards show nothing"),
    ("attach_files", "Attach Files", "charts and long logs are not sent"),
    ("read_message_history", "Read Message History", "replies to commands fail"),
    ("add_reactions", "Add Reactions", "reactions on commands fail"),
    ("create_public_threads", "Create Public Threads", "a job gets no thread"),
    ("send_messages_in_threads", "Send Messages in Threads", "a job's thread stays empty"),
    ("pin_messages", "Pin Messages", "$status pin cannot pin the status card"),
)


@dataclass(frozen=True)
class Finding:
    """One check's result: ``ok`` False means startup would fail or misbehave."""

    check: str
    ok: bool
    message: str


def invite_url(application_id: int) -> str:
    """The URL that adds the bot to a server with the scopes and permissions Adjutant needs."""
    return discord.utils.oauth_url(
        application_id, permissions=INVITE_PERMISSIONS, scopes=("bot", "applications.commands")
    )


async def check_discord(settings: Settings, *, timeout: float = CHECK_TIMEOUT) -> list[Finding]:  # noqa: ASYNC109
    """Token accepted, Message Content intent enabled, channel found and writable."""
    if settings.token is None:
        return [
            Finding(
                "discord token",
                False,
                "DISCORD_TOKEN is not set: copy your bot token from the Discord Developer Portal (Bot tab)",
            )
        ]
    findings: list[Finding] = []
    client = discord.Client(intents=discord.Intents.none())
    try:
        try:
            await asyncio.wait_for(client.login(settings.token.reveal()), timeout)
        except discord.LoginFailure:
            return [Finding("discord token", False, "Discord rejected DISCORD_TOKEN: reset it in the Developer Portal")]
        except (TimeoutError, OSError, discord.HTTPException) as error:
            return [Finding("discord token", False, f"Discord not reachable ({_short(error)}); check the network")]
        assert client.user is not None
        findings.append(Finding("discord token", True, f"logged in as {client.user}"))
        app = await asyncio.wait_for(client.application_info(), timeout)
        flags = app.flags
        if flags.gateway_message_content or flags.gateway_message_content_limited:
            findings.append(Finding("message content intent", True, "enabled"))
        else:
            findings.append(
                Finding(
                    "message content intent",
                    False,
                    "not enabled: Developer Portal → your application → Bot → Privileged Gateway Intents → "
                    "MESSAGE CONTENT INTENT (slash commands work without it; $ commands do not)",
                )
            )
        if app.bot_public:
            findings.append(
                Finding(
                    "public bot",
                    True,
                    "warning: anyone who knows the application id can add this bot to their server. Adjutant answers "
                    "only in ADJUTANT_GUILD_ID's servers, but you can turn it off: Developer Portal → your "
                    "application → Bot → Public Bot → off → Save Changes",
                )
            )
        findings.extend(await asyncio.wait_for(_check_channel(client, settings), timeout))
        findings.append(Finding("invite url", True, invite_url(app.id)))
    except discord.HTTPException as error:
        findings.append(
            Finding("discord", False, f"Discord answered HTTP {error.status} ({_short(error)}); check the token's bot")
        )
    except (TimeoutError, OSError) as error:
        findings.append(Finding("discord", False, f"Discord did not answer ({_short(error)})"))
    finally:
        await client.close()
    return findings


async def _check_channel(client: discord.Client, settings: Settings) -> list[Finding]:
    """Every configured channel found in Adjutant's server(s) and writable."""
    assert client.user is not None
    joined = [guild async for guild in client.fetch_guilds(limit=200)]
    if not joined:
        return [
            Finding(
                "channel",
                False,
                "the bot is in no server yet: invite it (python -m adjutant --invite-url prints the link)",
            )
        ]
    if len(joined) > 1 and not settings.guild_ids:
        names = ", ".join(f"{g.name} ({g.id})" for g in joined[:5])
        return [
            Finding(
                "servers",
                False,
                f"the bot is in {len(joined)} servers ({names}) and ADJUTANT_GUILD_ID is not set: Adjutant answers in "
                "none of them until ADJUTANT_GUILD_ID names the team's server (copy its id: right-click the server → "
                "Copy Server ID)",
            )
        ]
    guilds = [g for g in joined if not settings.guild_ids or g.id in settings.guild_ids]
    if not guilds:
        return [Finding("servers", False, f"the bot is not in ADJUTANT_GUILD_ID's server(s) {settings.guild_ids}")]
    channels = []
    for partial in guilds:
        guild = await client.fetch_guild(partial.id)
        me = await guild.fetch_member(client.user.id)
        channels += [(guild, me, c) for c in await guild.fetch_channels() if isinstance(c, discord.TextChannel)]
    findings = []
    where = "the [[projects]] table's channel" if settings.config is not None else "ADJUTANT_CHANNEL"
    for route in settings.routes:
        findings.append(_channel_finding(route.channel, channels, guilds, where))
    return findings


def _channel_finding(setting: str | int, channels: list[Any], guilds: list[Any], where: str) -> Finding:
    for guild, me, channel in channels:
        if not (channel.id == setting if isinstance(setting, int) else channel.name == setting):
            continue
        permissions = channel.permissions_for(me)
        missing = [
            f"{label} ({why})"
            for attribute, label, why in CHANNEL_NEEDS
            if not (getattr(permissions, attribute) or (attribute == "pin_messages" and permissions.manage_messages))
        ]
        if missing:
            return Finding(
                "channel",
                False,
                f"#{channel.name} in {guild.name} found, but the bot lacks: {'; '.join(missing)}. Fix: Server Settings"
                f" → Roles → the bot's role, or #{channel.name} → Edit Channel → Permissions, and allow them (an"
                " invite from `python -m adjutant --invite-url` asks for all of them)",
            )
        return Finding("channel", True, f"#{channel.name} in {guild.name} is writable")
    names = ", ".join(g.name for g in guilds[:5])
    return Finding(
        "channel", False, f"no text channel {setting!r} in the bot's servers ({names}); set {where} to an existing one"
    )


def check_wandb(settings: Settings, environ: Mapping[str, str], *, timeout: float | None = None) -> list[Finding]:
    """(blocking) W&B key accepted and the project reachable. Run in a thread."""
    timeout = min(settings.wandb_timeout, CHECK_TIMEOUT) if timeout is None else timeout
    if not settings.reporting_enabled:
        return [Finding("w&b", True, "reporting is off (WANDB_PROJECT not set)")]
    problems = settings.problems(environ)
    if any("W&B credentials" in p for p in problems):
        return [Finding("w&b key", False, next(p for p in problems if "W&B credentials" in p))]
    try:
        import wandb

        api = wandb.Api(timeout=int(timeout), overrides={"entity": settings.entity} if settings.entity else {})
        viewer = api.viewer
    except Exception as error:
        base = environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
        return [
            Finding(
                "w&b key",
                False,
                f"W&B at {base} did not accept the key or did not answer ({_short(error)}); check WANDB_API_KEY "
                "(https://wandb.ai/authorize), WANDB_BASE_URL and the network; WANDB_MODE=offline is not for the bot",
            )
        ]
    findings = [Finding("w&b key", True, f"accepted for {getattr(viewer, 'username', None) or 'your user'}")]
    seen = set()
    for route in settings.routes:
        if route.project is None or route.project_label in seen:
            continue
        seen.add(route.project_label)
        path = route.project_label
        try:
            count = len(api.runs(path, per_page=1))
        except ValueError:
            findings.append(
                Finding("w&b project", True, f"{path} has no runs yet (W&B creates it with the first run); fine")
            )
        except Exception as error:
            findings.append(Finding("w&b project", False, f"{path} not reachable ({_short(error)})"))
        else:
            findings.append(Finding("w&b project", True, f"{path}: {count} run(s)"))
    return findings


def check_script(settings: Settings) -> list[Finding]:
    """Each experiment script exists and can be run (settings already refused a non-executable one)."""
    scripts = list(dict.fromkeys(r.experiment_script for r in settings.routes if r.experiment_script is not None))
    if not scripts:
        return [Finding("experiment script", True, "launching is off (ADJUTANT_EXPERIMENT_SCRIPT not set)")]
    findings = []
    for script in scripts:
        first = script.read_bytes()[:2] if script.is_file() else b""
        if first != b"#!":
            findings.append(
                Finding(
                    "experiment script",
                    False,
                    f"{script} has no shebang line (e.g. #!/usr/bin/env bash) on its first line: it cannot be executed",
                )
            )
        else:
            findings.append(Finding("experiment script", True, f"{script} is executable"))
    return findings


def launches_on(settings: Settings, launcher: str) -> bool:
    """Does any channel launch on ``launcher`` (ADJUTANT_LAUNCHER, or a ``launcher`` key in the projects file)?"""
    return settings.launcher == launcher or any(route.launcher == launcher for route in settings.routes)


def check_ray(settings: Settings) -> list[Finding]:
    """(blocking) When a channel launches on Ray: Ray's job client installed and the Jobs API answering."""
    if not launches_on(settings, "ray"):
        return []
    from adjutant.launchers import LaunchError
    from adjutant.launchers.ray import RayLauncher

    launcher = RayLauncher(settings, "")
    launcher.timeout = min(settings.ray_timeout, CHECK_TIMEOUT)
    try:
        jobs = launcher._call(launcher.client().list_jobs)
    except (LaunchError, RuntimeError) as error:
        return [Finding("ray", False, f"{error}; start the head (ray start --head) or fix ADJUTANT_RAY_ADDRESS")]
    return [Finding("ray", True, f"Ray at {settings.ray_address} answers ({len(jobs)} job(s) known)")]


def check_gpus(settings: Settings) -> list[Finding]:
    """(blocking) With ADJUTANT_GPUS=auto: NVML answers and sees at least one GPU."""
    if settings.gpus != "auto":
        return []
    from adjutant.nvml import NvmlUnavailable, read_gpus

    try:
        readings = read_gpus()
    except NvmlUnavailable as error:
        return [Finding("gpus", False, str(error))]
    if not readings:
        return [Finding("gpus", False, "NVML sees no GPU on this machine; list the GPU ids or unset ADJUTANT_GPUS")]
    names = ", ".join(f"{r.index}: {r.name}" for r in readings)
    return [Finding("gpus", True, f"{len(readings)} GPU(s): {names}")]


def check_containers(settings: Settings) -> list[Finding]:
    """(blocking) When a channel launches in containers: the runtime answers, each image is on this machine, and a
    trivial container of each starts (and how long that took)."""
    if not launches_on(settings, "container"):
        return []
    import time

    from adjutant.launchers import LaunchError
    from adjutant.launchers.container import ContainerLauncher, parse_memory

    launcher = ContainerLauncher(settings, "")
    runtime = launcher.runtime
    try:
        version = launcher.run(["version", "--format", "{{.Client.Version}}"], timeout=CHECK_TIMEOUT)
    except LaunchError as error:
        return [Finding("containers", False, str(error))]
    if version.returncode != 0:
        return [Finding("containers", False, f"{runtime} does not answer: {_short(version.stderr or version.stdout)}")]
    findings = [Finding("containers", True, f"{runtime} {version.stdout.strip()}")]
    memory = settings.container_memory
    if memory and parse_memory(memory) is None:
        findings.append(Finding("containers", False, f"ADJUTANT_CONTAINER_MEMORY={memory} is not a size like 16g"))
    named = [settings.container_image, *(route.image for route in settings.routes)]
    images = list(dict.fromkeys(image for image in named if image))
    if not images:
        findings.append(
            Finding("containers", False, "no image: set ADJUTANT_CONTAINER_IMAGE (or image in the projects file)")
        )
    for image in images:
        try:
            present = launcher.run(["image", "inspect", "--format", "{{.Id}}", image], timeout=CHECK_TIMEOUT)
            if present.returncode != 0:
                findings.append(
                    Finding(
                        "containers",
                        False,
                        f"image {image} is not on this machine: build it ({runtime} build -t {image} .) or pull it",
                    )
                )
                continue
            started = time.monotonic()
            trivial = launcher.run(
                ["run", "--rm", "--network", "none", *shlex.split(settings.container_args or ""),
                 "--entrypoint", "true", image],
                timeout=CHECK_TIMEOUT,
            )  # fmt: skip
            took = time.monotonic() - started
        except LaunchError as error:
            findings.append(Finding("containers", False, f"image {image}: {error}"))
            continue
        if trivial.returncode != 0:
            findings.append(
                Finding(
                    "containers",
                    False,
                    f"a container of {image} does not start ({runtime} run … true): "
                    f"{_short(trivial.stderr.strip().splitlines()[-1] if trivial.stderr.strip() else trivial.stdout)}",
                )
            )
            continue
        findings.append(Finding("containers", True, f"image {image}: a container starts and ends in {took:.2f}s"))
    return findings


async def run_checks(settings: Settings, environ: Mapping[str, str] | None = None) -> list[Finding]:
    """All checks; Discord and W&B in parallel, each bounded by its own timeout."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    discord_task = asyncio.create_task(check_discord(settings))
    wandb_findings = await asyncio.to_thread(check_wandb, settings, env)
    ray_findings = await asyncio.to_thread(check_ray, settings)
    gpu_findings = await asyncio.to_thread(check_gpus, settings)
    container_findings = await asyncio.to_thread(check_containers, settings)
    return [
        *await discord_task,
        *wandb_findings,
        *check_script(settings),
        *ray_findings,
        *gpu_findings,
        *container_findings,
    ]


def _short(error: Any) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:200]
