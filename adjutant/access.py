"""Who may launch and cancel experiments."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from adjutant.settings import Settings


class LaunchRule(Protocol):
    """Who may launch: the global settings, or one channel's route (ADJUTANT_CONFIG)."""

    @property
    def launch_roles(self) -> Sequence[str]: ...

    @property
    def launch_users(self) -> Sequence[int]: ...


def guild_allowed(guild_id: int | None, settings: Settings, guilds_joined: int) -> bool:
    """Is this server one Adjutant serves? ADJUTANT_GUILD_ID's servers; without it, only while the bot is in
    exactly one server (a public bot can be invited anywhere: a second server must never be obeyed)."""
    if guild_id is None:
        return False
    if settings.guild_ids:
        return guild_id in settings.guild_ids
    return guilds_joined <= 1


def may_launch(user: Any, settings: LaunchRule, *, is_owner: bool) -> bool:
    """ADJUTANT_LAUNCH_ROLES/USERS when set; otherwise Administrator, Manage Server, or the bot's owner.

    ``user`` is a discord Member (roles and guild permissions known) or a plain User (a DM: only
    listed users and the owner). Callers check :func:`guild_allowed` first, so the member's roles and
    permissions are those of one of Adjutant's own servers.
    """
    if is_owner or user.id in settings.launch_users:
        return True
    roles = getattr(user, "roles", None) or []
    if settings.launch_roles:
        allowed = set(settings.launch_roles)
        return any(role.name in allowed or str(role.id) in allowed for role in roles)
    if settings.launch_users:
        return False
    permissions = getattr(user, "guild_permissions", None)
    return bool(permissions is not None and (permissions.administrator or permissions.manage_guild))


def refusal(settings: LaunchRule, action: str = "launch or cancel experiments") -> str:
    """The reply to someone who may not launch (or do ``action``, which needs the same rights)."""
    if settings.launch_roles or settings.launch_users:
        who = []
        if settings.launch_roles:
            who.append("members with the role(s) " + ", ".join(settings.launch_roles))
        if settings.launch_users:
            who.append("listed users")
        return f"You are not allowed to {action} here; only {' and '.join(who)} may."
    return (
        f"You are not allowed to {action} here; only members with the Administrator or "
        "Manage Server permission and the bot's owner may (set ADJUTANT_LAUNCH_ROLES to allow a team role)."
    )


def _has_role(user: Any, names_or_ids: Sequence[str]) -> bool:
    allowed = set(names_or_ids)
    return any(role.name in allowed or str(role.id) in allowed for role in getattr(user, "roles", None) or [])


def _manages(user: Any) -> bool:
    permissions = getattr(user, "guild_permissions", None)
    return bool(permissions is not None and (permissions.administrator or permissions.manage_guild))


def may_request(user: Any, settings: Settings) -> bool:
    """ADJUTANT_REQUEST_ROLES: may ask for launches that an approver then approves."""
    return bool(settings.request_roles) and _has_role(user, settings.request_roles)


def may_approve(user: Any, settings: Settings, *, is_owner: bool) -> bool:
    """ADJUTANT_APPROVER_ROLES when set; otherwise Administrator, Manage Server, or the bot's owner."""
    if is_owner:
        return True
    if settings.approver_roles:
        return _has_role(user, settings.approver_roles)
    return _manages(user)


def quota_exempt(user: Any) -> bool:
    """Members with Administrator or Manage Server have no GPU-hour quota."""
    return _manages(user)


def is_admin(user: Any) -> bool:
    """Who may read the audit trail: Administrator or Manage Server."""
    return _manages(user)
