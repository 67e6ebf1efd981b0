"""What Discord refuses, for the Discord stand-in: request-body rules and channel permissions.

The limits, enums and field names come from Discord's published OpenAPI document (discord/discord-api-spec,
``specs/openapi.json``: ``MessageCreateRequest``, ``RichEmbed``, the ``…ComponentForMessageRequest`` and
``…ForModalRequest`` schemas, ``ApplicationCommandUpdateRequest`` and its option schemas,
``CreateTextThreadWithMessageRequest``, the interaction callback schemas), plus the documented rules a schema
cannot express (content ≤ 2,000 for a bot, 6,000 characters across a message's embeds, a select alone in its row,
unique custom ids, the Components V2 flag, command names, sizes and counts). The validators are our own.

Each validator returns ``None`` for a body Discord accepts, else a :class:`Refusal` carrying Discord's answer:
HTTP 400 ``{"code": 50035, "message": "Invalid Form Body", "errors": {path…: {"_errors": [{code, message}]}}}``,
which discord.py turns into ``HTTPException`` text such as ``In 0.description: Must be between 1 and 100 in length.``

Three readings keep discord.py's valid bodies valid (Discord accepts them): integers may come as decimal strings
(``default_member_permissions: "8"``), snowflakes as integers (reply and attachment ids), and a union of
component or option schemas is resolved by its ``type`` tag.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Any

# --- permission bits (Discord's documented values) ---------------------------------------------------------
CREATE_INSTANT_INVITE = 1 << 0
ADMINISTRATOR = 1 << 3
MANAGE_CHANNELS = 1 << 4
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
MANAGE_THREADS = 1 << 34
CREATE_PUBLIC_THREADS = 1 << 35
SEND_MESSAGES_IN_THREADS = 1 << 38
PIN_MESSAGES = 1 << 51
ALL_PERMISSIONS = (1 << 53) - 1

#: Names tests may use with ``DiscordStandIn.withhold``.
PERMISSIONS: dict[str, int] = {
    "view_channel": VIEW_CHANNEL,
    "send_messages": SEND_MESSAGES,
    "embed_links": EMBED_LINKS,
    "attach_files": ATTACH_FILES,
    "read_message_history": READ_MESSAGE_HISTORY,
    "add_reactions": ADD_REACTIONS,
    "create_public_threads": CREATE_PUBLIC_THREADS,
    "send_messages_in_threads": SEND_MESSAGES_IN_THREADS,
    "manage_messages": MANAGE_MESSAGES,
    "pin_messages": PIN_MESSAGES,
}

#: What the bot's own (managed) role grants in the default world: everything Adjutant does.
BOT_ROLE_PERMISSIONS = (
    VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | ADD_REACTIONS
    | CREATE_PUBLIC_THREADS
    | SEND_MESSAGES_IN_THREADS
    | PIN_MESSAGES
)

COMPONENTS_V2 = 1 << 15
EPHEMERAL = 1 << 6
MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_EMBED_TOTAL = 6000
MAX_COMMANDS = {1: 100, 2: 15, 3: 15}
MAX_COMMAND_SIZE = 4000
SELECT_TYPES = {3, 5, 6, 7, 8}
INTERACTION_DEADLINE = 3.0


@dataclass
class Refusal:
    """Discord's answer to a request it refuses."""

    status: int
    code: int
    message: str
    errors: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.errors:
            body["errors"] = self.errors
        return body


def missing_permissions() -> Refusal:
    return Refusal(403, 50013, "Missing Permissions")


def invalid_json() -> Refusal:
    return Refusal(400, 50109, "The request body contains invalid JSON.")


class Errors:
    """Discord's nested ``errors`` object, built up path by path."""

    def __init__(self) -> None:
        self.tree: dict[str, Any] = {}

    def add(self, path: tuple[str | int, ...], code: str, message: str) -> None:
        node = self.tree
        for part in path:
            node = node.setdefault(str(part), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})

    def refusal(self) -> Refusal | None:
        return Refusal(400, 50035, "Invalid Form Body", self.tree) if self.tree else None


Path = tuple[str | int, ...]


# --- primitive checks ---------------------------------------------------------------------------------------
def _length(errors: Errors, path: Path, size: int, low: int, high: int) -> None:
    if low <= size <= high:
        return
    if low > 0:
        errors.add(path, "BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length.")
    else:
        errors.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {high} or fewer in length.")


def _string(
    errors: Errors, path: Path, value: Any, low: int, high: int, *, required: bool = False, nullable: bool = True
) -> None:
    if value is None:
        if required or not nullable:
            errors.add(path, "BASE_TYPE_REQUIRED", "This field is required")
        return
    if not isinstance(value, str):
        errors.add(path, "STRING_TYPE_CONVERT", "Could not interpret value as string.")
        return
    _length(errors, path, len(value), low, high)


def _as_int(value: Any) -> int | None:
    """An integer as Discord reads it: a JSON integer or a decimal string (never a boolean)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit() and value.isascii():
        return int(value)
    return None


def _integer(
    errors: Errors,
    path: Path,
    value: Any,
    low: int | None = None,
    high: int | None = None,
    *,
    choices: set[int] | None = None,
    required: bool = False,
) -> int | None:
    if value is None:
        if required:
            errors.add(path, "BASE_TYPE_REQUIRED", "This field is required")
        return None
    number = _as_int(value)
    if number is None:
        errors.add(path, "NUMBER_TYPE_COERCE", f'Value "{value}" is not int.')
        return None
    if choices is not None and number not in choices:
        listed = ", ".join(str(c) for c in sorted(choices))
        errors.add(path, "BASE_TYPE_CHOICES", f"Value must be one of {{{listed}}}.")
    elif low is not None and number < low:
        errors.add(path, "NUMBER_TYPE_MIN", f"int value should be greater than or equal to {low}.")
    elif high is not None and number > high:
        errors.add(path, "NUMBER_TYPE_MAX", f"int value should be less than or equal to {high}.")
    return number


def _number(errors: Errors, path: Path, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        errors.add(path, "NUMBER_TYPE_COERCE", f'Value "{value}" is not a valid number.')


def _boolean(errors: Errors, path: Path, value: Any) -> None:
    if value is not None and not isinstance(value, bool):
        errors.add(path, "BASE_TYPE_BOOLEAN", "Must be either true or false.")


def _snowflake(errors: Errors, path: Path, value: Any, *, required: bool = False) -> None:
    if value is None:
        if required:
            errors.add(path, "BASE_TYPE_REQUIRED", "This field is required")
        return
    number = _as_int(value)
    if number is None or number < 0:
        errors.add(path, "NUMBER_TYPE_COERCE", f'Value "{value}" is not snowflake.')


def _array(errors: Errors, path: Path, value: Any, low: int, high: int, *, required: bool = False) -> list[Any]:
    """The list (empty when absent or not a list); its length is checked."""
    if value is None:
        if required:
            errors.add(path, "BASE_TYPE_REQUIRED", "This field is required")
        return []
    if not isinstance(value, list):
        errors.add(path, "BASE_TYPE_ARRAY", "Must be an array.")
        return []
    _length(errors, path, len(value), low, high)
    return value


def _object(errors: Errors, path: Path, value: Any, *, required: bool = False) -> dict[str, Any] | None:
    if value is None:
        if required:
            errors.add(path, "BASE_TYPE_REQUIRED", "This field is required")
        return None
    if not isinstance(value, dict):
        errors.add(path, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        return None
    return value


def _localizations(errors: Errors, path: Path, value: Any, high: int) -> None:
    table = _object(errors, path, value)
    for locale, text in (table or {}).items():
        _string(errors, (*path, locale), text, 1, high, nullable=False)


# --- messages -------------------------------------------------------------------------------------------
def message_body(body: Any, *, files: int = 0, create: bool = True) -> Refusal | None:
    """A message create (``create``: it may not be empty) or edit body, in a channel or through an interaction."""
    errors = Errors()
    if not isinstance(body, dict):
        errors.add((), "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        return errors.refusal()
    flags = _integer(errors, ("flags",), body.get("flags")) or 0
    v2 = bool(flags & COMPONENTS_V2)
    content = body.get("content")
    _string(errors, ("content",), content, 0, MAX_CONTENT)
    embeds = _array(errors, ("embeds",), body.get("embeds"), 0, MAX_EMBEDS)
    _embeds(errors, embeds)
    components = _array(errors, ("components",), body.get("components"), 0, 40)
    _message_components(errors, components, v2)
    if v2:
        for name in ("content", "embeds", "poll", "sticker_ids"):
            if body.get(name):
                errors.add(
                    (name,),
                    "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
                    f"The '{name}' field cannot be used when using MessageFlags.IS_COMPONENTS_V2",
                )
    attachments = _array(errors, ("attachments",), body.get("attachments"), 0, 10)
    for i, attachment in enumerate(attachments):
        item = _object(errors, ("attachments", i), attachment, required=True) or {}
        _snowflake(errors, ("attachments", i, "id"), item.get("id"), required=True)
        _string(errors, ("attachments", i, "filename"), item.get("filename"), 1, 1024)
        _string(errors, ("attachments", i, "description"), item.get("description"), 0, 1024)
    _allowed_mentions(errors, body.get("allowed_mentions"))
    reference = _object(errors, ("message_reference",), body.get("message_reference"))
    if reference is not None:
        _snowflake(errors, ("message_reference", "message_id"), reference.get("message_id"), required=True)
        _snowflake(errors, ("message_reference", "channel_id"), reference.get("channel_id"))
        _snowflake(errors, ("message_reference", "guild_id"), reference.get("guild_id"))
        _boolean(errors, ("message_reference", "fail_if_not_exists"), reference.get("fail_if_not_exists"))
    nonce = body.get("nonce")
    if isinstance(nonce, str):
        _length(errors, ("nonce",), len(nonce), 0, 25)
    elif nonce is not None and _as_int(nonce) is None:
        errors.add(("nonce",), "BASE_TYPE_CHOICES", "Must be a string or an integer.")
    _array(errors, ("sticker_ids",), body.get("sticker_ids"), 0, 3)
    _boolean(errors, ("tts",), body.get("tts"))
    refusal = errors.refusal()
    empty = not (content or embeds or components or files or body.get("sticker_ids") or body.get("poll"))
    if refusal is None and create and empty:
        return Refusal(400, 50006, "Cannot send an empty message")
    return refusal


def _embeds(errors: Errors, embeds: list[Any]) -> None:
    total = 0
    for i, raw in enumerate(embeds):
        path: Path = ("embeds", i)
        embed = _object(errors, path, raw, required=True)
        if embed is None:
            continue
        _string(errors, (*path, "title"), embed.get("title"), 0, 256)
        _string(errors, (*path, "description"), embed.get("description"), 0, 4096)
        _string(errors, (*path, "url"), embed.get("url"), 0, 2048)
        _integer(errors, (*path, "color"), embed.get("color"), 0, 0xFFFFFF)
        footer = _object(errors, (*path, "footer"), embed.get("footer")) or {}
        _string(errors, (*path, "footer", "text"), footer.get("text"), 0, 2048)
        author = _object(errors, (*path, "author"), embed.get("author")) or {}
        _string(errors, (*path, "author", "name"), author.get("name"), 0, 256)
        for part in ("image", "thumbnail"):
            media = _object(errors, (*path, part), embed.get(part)) or {}
            _string(errors, (*path, part, "url"), media.get("url"), 0, 2048)
        fields = _array(errors, (*path, "fields"), embed.get("fields"), 0, 25)
        for j, raw_field in enumerate(fields):
            item = _object(errors, (*path, "fields", j), raw_field, required=True) or {}
            # Discord refuses an empty field name or value ("This field is required").
            _string(errors, (*path, "fields", j, "name"), item.get("name") or None, 1, 256, required=True)
            _string(errors, (*path, "fields", j, "value"), item.get("value") or None, 1, 1024, required=True)
            _boolean(errors, (*path, "fields", j, "inline"), item.get("inline"))
            total += _text_len(item.get("name")) + _text_len(item.get("value"))
        total += _text_len(embed.get("title")) + _text_len(embed.get("description"))
        total += _text_len(footer.get("text")) + _text_len(author.get("name"))
    if total > MAX_EMBED_TOTAL:
        errors.add(("embeds",), "MAX_EMBED_SIZE_EXCEEDED", f"Embed size exceeds maximum size of {MAX_EMBED_TOTAL}")


def _text_len(value: Any) -> int:
    return len(value) if isinstance(value, str) else 0


def _allowed_mentions(errors: Errors, value: Any) -> None:
    mentions = _object(errors, ("allowed_mentions",), value)
    if mentions is None:
        return
    parse = _array(errors, ("allowed_mentions", "parse"), mentions.get("parse"), 0, 3)
    for i, kind in enumerate(parse):
        if kind not in ("users", "roles", "everyone"):
            errors.add(
                ("allowed_mentions", "parse", i), "BASE_TYPE_CHOICES", "Value must be one of users, roles, everyone."
            )
    for key in ("users", "roles"):
        ids = _array(errors, ("allowed_mentions", key), mentions.get(key), 0, 100)
        for i, value_id in enumerate(ids):
            _snowflake(errors, ("allowed_mentions", key, i), value_id)
        if key in parse and ids:
            errors.add(
                ("allowed_mentions",),
                "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                f'parse:["{key}"] and {key}: [ids...] are mutually exclusive.',
            )


def _message_components(errors: Errors, components: list[Any], v2: bool) -> None:
    custom_ids: set[str] = set()
    count = 0

    def walk(path: Path, raw: Any, *, top: bool, in_row: bool = False) -> None:
        nonlocal count
        component = _object(errors, path, raw, required=True)
        if component is None:
            return
        count += 1
        kind = _integer(errors, (*path, "type"), component.get("type"), required=True)
        if kind is None:
            return
        allowed = {1, 9, 10, 12, 13, 14, 17} if (top and v2) else {1} if top else None
        if allowed is not None and kind not in allowed:
            errors.add((*path, "type"), "COMPONENT_TYPE_INVALID", f"Component type {kind} is not valid here.")
            return
        if kind == 1:
            children = _array(errors, (*path, "components"), component.get("components"), 1, 5, required=True)
            if any(isinstance(c, dict) and c.get("type") in SELECT_TYPES for c in children) and len(children) > 1:
                errors.add(
                    (*path, "components"),
                    "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                    "The specified component exceeds the maximum width",
                )
            for i, child in enumerate(children):
                child_kind = child.get("type") if isinstance(child, dict) else None
                if child_kind not in ({2} | SELECT_TYPES):
                    errors.add((*path, "components", i, "type"), "COMPONENT_TYPE_INVALID", "Invalid component type")
                    continue
                walk((*path, "components", i), child, top=False, in_row=True)
        elif kind == 2:
            _button(errors, path, component, custom_ids)
        elif kind in SELECT_TYPES:
            if not in_row:
                errors.add((*path, "type"), "COMPONENT_TYPE_INVALID", "A select menu must be inside an action row")
            _select(errors, path, component, custom_ids)
        elif kind == 10:
            _string(errors, (*path, "content"), component.get("content"), 1, 4000, required=True)
        elif kind == 9:
            texts = _array(errors, (*path, "components"), component.get("components"), 1, 3, required=True)
            for i, text in enumerate(texts):
                walk((*path, "components", i), text, top=False)
            accessory = _object(errors, (*path, "accessory"), component.get("accessory"), required=True)
            if accessory is not None:
                walk((*path, "accessory"), accessory, top=False)
        elif kind == 17:
            children = _array(errors, (*path, "components"), component.get("components"), 1, 40, required=True)
            for i, child in enumerate(children):
                walk((*path, "components", i), child, top=False)
        elif kind == 12:
            items = _array(errors, (*path, "items"), component.get("items"), 1, 10, required=True)
            for i, item in enumerate(items):
                media = _object(errors, (*path, "items", i, "media"), (item or {}).get("media"), required=True)
                _string(errors, (*path, "items", i, "media", "url"), (media or {}).get("url"), 1, 2048, required=True)
        elif kind == 11:
            media = _object(errors, (*path, "media"), component.get("media"), required=True)
            _string(errors, (*path, "media", "url"), (media or {}).get("url"), 1, 2048, required=True)
        elif kind == 13:
            media = _object(errors, (*path, "file"), component.get("file"), required=True)
            _string(errors, (*path, "file", "url"), (media or {}).get("url"), 1, 2048, required=True)

    for i, raw in enumerate(components):
        walk(("components", i), raw, top=True)
    if not v2 and len(components) > 5:
        errors.add(("components",), "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
    if v2 and count > 40:
        errors.add(
            ("components",),
            "COMPONENT_MAX_TOTAL_COMPONENTS_EXCEEDED",
            "The maximum number of components (40) exceeded.",
        )


def _custom_id(errors: Errors, path: Path, value: Any, seen: set[str]) -> None:
    _string(errors, path, value, 1, 100, required=True)
    if isinstance(value, str):
        if value in seen:
            errors.add(path, "COMPONENT_CUSTOM_ID_DUPLICATED", "Component custom id cannot be duplicated")
        seen.add(value)


def _button(errors: Errors, path: Path, button: dict[str, Any], seen: set[str]) -> None:
    style = _integer(errors, (*path, "style"), button.get("style"), choices={1, 2, 3, 4, 5, 6}, required=True)
    _string(errors, (*path, "label"), button.get("label"), 0, 80)
    _boolean(errors, (*path, "disabled"), button.get("disabled"))
    emoji = _object(errors, (*path, "emoji"), button.get("emoji"))
    if emoji is not None:
        _string(errors, (*path, "emoji", "name"), emoji.get("name"), 0, 32)
        _snowflake(errors, (*path, "emoji", "id"), emoji.get("id"))
    if style == 5:
        _string(errors, (*path, "url"), button.get("url"), 1, 512, required=True)
        if button.get("custom_id") is not None:
            errors.add((*path, "custom_id"), "BUTTON_CUSTOM_ID_INVALID", "A link button cannot have a custom id")
    elif style == 6:
        _snowflake(errors, (*path, "sku_id"), button.get("sku_id"), required=True)
    elif style is not None:
        _custom_id(errors, (*path, "custom_id"), button.get("custom_id"), seen)
        if button.get("url") is not None:
            errors.add((*path, "url"), "BUTTON_URL_INVALID", "Only link buttons can have a url")


def _select(errors: Errors, path: Path, select: dict[str, Any], seen: set[str]) -> None:
    _custom_id(errors, (*path, "custom_id"), select.get("custom_id"), seen)
    _string(errors, (*path, "placeholder"), select.get("placeholder"), 0, 150)
    low = _integer(errors, (*path, "min_values"), select.get("min_values"), 0, 25)
    high = _integer(errors, (*path, "max_values"), select.get("max_values"), 1, 25)
    if select.get("type") == 3:
        options = _array(errors, (*path, "options"), select.get("options"), 1, 25, required=True)
        values: set[str] = set()
        for i, raw in enumerate(options):
            option = _object(errors, (*path, "options", i), raw, required=True) or {}
            _string(errors, (*path, "options", i, "label"), option.get("label"), 1, 100, required=True)
            _string(errors, (*path, "options", i, "value"), option.get("value"), 1, 100, required=True)
            _string(errors, (*path, "options", i, "description"), option.get("description"), 0, 100)
            if option.get("value") in values:
                errors.add(
                    (*path, "options", i, "value"), "SELECT_COMPONENT_OPTION_VALUE_DUPLICATED", "Duplicate value"
                )
            values.add(str(option.get("value")))
        if high is not None and high > len(options):
            errors.add(
                (*path, "max_values"), "NUMBER_TYPE_MAX", f"int value should be less than or equal to {len(options)}."
            )
    if low is not None and high is not None and low > high:
        errors.add((*path, "min_values"), "SELECT_COMPONENT_MIN_VALUES_TOO_LARGE", "min_values exceeds max_values")


def open_dm(body: Any) -> Refusal | None:
    """``POST /users/@me/channels``: ``recipient_id`` is a snowflake."""
    errors = Errors()
    data = _object(errors, (), body, required=True) or {}
    _snowflake(errors, ("recipient_id",), data.get("recipient_id"), required=True)
    return errors.refusal()


# --- threads ------------------------------------------------------------------------------------------
def thread_from_message(body: Any) -> Refusal | None:
    errors = Errors()
    data = _object(errors, (), body, required=True) or {}
    _string(errors, ("name",), data.get("name"), 1, 100, required=True)
    _integer(errors, ("auto_archive_duration",), data.get("auto_archive_duration"), choices={60, 1440, 4320, 10080})
    _integer(errors, ("rate_limit_per_user",), data.get("rate_limit_per_user"), 0, 21600)
    return errors.refusal()


# --- interaction callbacks ------------------------------------------------------------------------------
#: Interaction type → the callback types Discord accepts for it (2 command, 3 component, 4 autocomplete,
#: 5 modal submit).
CALLBACKS_FOR = {2: {4, 5, 9}, 3: {4, 5, 6, 7, 9}, 4: {8}, 5: {4, 5, 6, 7}}


def interaction_callback(body: Any, interaction_type: int, *, files: int = 0) -> Refusal | None:
    errors = Errors()
    data = _object(errors, (), body, required=True) or {}
    allowed = CALLBACKS_FOR.get(interaction_type, {4, 5, 6, 7, 8, 9})
    kind = _integer(errors, ("type",), data.get("type"), choices=allowed, required=True)
    refusal = errors.refusal()
    if refusal is not None or kind is None:
        return refusal
    payload = data.get("data")
    if kind in (4, 7) and payload is not None:
        return _under(message_body(payload, files=files, create=kind == 4), "data")
    if kind == 8:
        return autocomplete_result(payload)
    if kind == 9:
        return modal(payload)
    return None


def _under(refusal: Refusal | None, key: str) -> Refusal | None:
    if refusal is not None and refusal.errors:
        refusal.errors = {key: refusal.errors}
    return refusal


def autocomplete_result(payload: Any) -> Refusal | None:
    errors = Errors()
    data = _object(errors, ("data",), payload, required=True) or {}
    choices = _array(errors, ("data", "choices"), data.get("choices"), 0, 25)
    for i, raw in enumerate(choices):
        choice = _object(errors, ("data", "choices", i), raw, required=True) or {}
        _string(errors, ("data", "choices", i, "name"), choice.get("name"), 1, 100, required=True)
        value = choice.get("value")
        if isinstance(value, str):
            _length(errors, ("data", "choices", i, "value"), len(value), 0, 6000)
        elif value is None:
            errors.add(("data", "choices", i, "value"), "BASE_TYPE_REQUIRED", "This field is required")
        else:
            _number(errors, ("data", "choices", i, "value"), value)
    return errors.refusal()


def modal(payload: Any) -> Refusal | None:
    errors = Errors()
    data = _object(errors, ("data",), payload, required=True) or {}
    _string(errors, ("data", "custom_id"), data.get("custom_id"), 1, 100, required=True)
    _string(errors, ("data", "title"), data.get("title"), 1, 45, required=True)
    # The schema allows 40; Discord documents (and enforces) 1 to 5 top-level components in a modal.
    rows = _array(errors, ("data", "components"), data.get("components"), 1, 5, required=True)
    seen: set[str] = set()
    for i, raw in enumerate(rows):
        path: Path = ("data", "components", i)
        row = _object(errors, path, raw, required=True) or {}
        kind = _integer(errors, (*path, "type"), row.get("type"), choices={1, 10, 18}, required=True)
        if kind == 1:
            inputs = _array(errors, (*path, "components"), row.get("components"), 1, 1, required=True)
            for j, text_input in enumerate(inputs):
                _text_input(errors, (*path, "components", j), text_input, seen, labelled=False)
        elif kind == 18:
            _string(errors, (*path, "label"), row.get("label"), 1, 45, required=True)
            _string(errors, (*path, "description"), row.get("description"), 1, 100)
            inner = _object(errors, (*path, "component"), row.get("component"), required=True)
            if inner is not None:
                inner_kind = _integer(errors, (*path, "component", "type"), inner.get("type"), required=True)
                if inner_kind == 4:
                    _text_input(errors, (*path, "component"), inner, seen, labelled=True)
                elif inner_kind in SELECT_TYPES:
                    _select(errors, (*path, "component"), inner, seen)
        elif kind == 10:
            _string(errors, (*path, "content"), row.get("content"), 1, 4000, required=True)
    return errors.refusal()


def _text_input(errors: Errors, path: Path, raw: Any, seen: set[str], *, labelled: bool) -> None:
    item = _object(errors, path, raw, required=True) or {}
    _integer(errors, (*path, "type"), item.get("type"), choices={4}, required=True)
    _custom_id(errors, (*path, "custom_id"), item.get("custom_id"), seen)
    _integer(errors, (*path, "style"), item.get("style"), choices={1, 2}, required=True)
    if labelled:
        if item.get("label") is not None:
            errors.add((*path, "label"), "BASE_TYPE_INVALID", "A text input inside a label has no label of its own")
    else:
        _string(errors, (*path, "label"), item.get("label"), 1, 45, required=True)
    _string(errors, (*path, "value"), item.get("value"), 0, 4000)
    _string(errors, (*path, "placeholder"), item.get("placeholder"), 0, 100)
    low = _integer(errors, (*path, "min_length"), item.get("min_length"), 0, 4000)
    high = _integer(errors, (*path, "max_length"), item.get("max_length"), 1, 4000)
    if low is not None and high is not None and low > high:
        errors.add((*path, "min_length"), "BASE_TYPE_BAD_LENGTH", "min_length exceeds max_length")
    value = item.get("value")
    if isinstance(value, str) and high is not None and len(value) > high:
        _length(errors, (*path, "value"), len(value), low or 0, high)


# --- application commands ------------------------------------------------------------------------------
def _name_char_ok(char: str) -> bool:
    """``[-_'\\p{L}\\p{N}\\p{sc=Deva}\\p{sc=Thai}]`` without the ``regex`` module."""
    if char in "-_'":
        return True
    if unicodedata.category(char)[0] in "LN":
        return True
    point = ord(char)
    deva = 0x0900 <= point <= 0x097F or 0xA8E0 <= point <= 0xA8FF or 0x11B00 <= point <= 0x11B5F
    thai = 0x0E01 <= point <= 0x0E5B
    return deva or thai


def chat_input_name_ok(name: str) -> bool:
    """Discord's chat-input (and option) name rule: 1 to 32 such characters, each in its lower-case form."""
    return 1 <= len(name) <= 32 and all(_name_char_ok(c) and c.lower() == c for c in name)


def _chat_name(errors: Errors, path: Path, value: Any) -> None:
    _string(errors, path, value, 1, 32, required=True)
    if isinstance(value, str) and 1 <= len(value) <= 32 and not chat_input_name_ok(value):
        errors.add(path, "APPLICATION_COMMAND_INVALID_NAME", f"Command name is invalid: {value!r}")


def bulk_overwrite(body: Any) -> Refusal | None:
    """``PUT /applications/{app}/commands`` (or a guild's): the whole list of commands."""
    errors = Errors()
    commands = _array(errors, (), body, 0, 130)
    counts: dict[int, int] = {}
    names: set[tuple[int, str]] = set()
    for i, raw in enumerate(commands):
        command = _object(errors, (i,), raw, required=True)
        if command is None:
            continue
        kind = _integer(errors, (i, "type"), command.get("type"), choices={1, 2, 3, 4}) or 1
        counts[kind] = counts.get(kind, 0) + 1
        _command(errors, (i,), command, kind)
        key = (kind, str(command.get("name")))
        if key in names:
            errors.add((i, "name"), "APPLICATION_COMMANDS_DUPLICATE_NAME", "Application command names must be unique")
        names.add(key)
    refusal = errors.refusal()
    if refusal is not None:
        return refusal
    for kind, most in MAX_COMMANDS.items():
        if counts.get(kind, 0) > most:
            return Refusal(400, 30032, f"Maximum number of application commands reached ({most})")
    return None


def _command(errors: Errors, path: Path, command: dict[str, Any], kind: int) -> None:
    if kind == 1:
        _chat_name(errors, (*path, "name"), command.get("name"))
        _string(errors, (*path, "description"), command.get("description"), 1, 100, required=True)
    else:
        _string(errors, (*path, "name"), command.get("name"), 1, 32, required=True)
        if command.get("description"):
            errors.add(
                (*path, "description"),
                "APPLICATION_COMMAND_CONTEXT_MENU_DESCRIPTION",
                "Context menu commands cannot have a description",
            )
        if command.get("options"):
            errors.add(
                (*path, "options"), "APPLICATION_COMMAND_OPTIONS_INVALID", "Context menu commands cannot have options"
            )
    _localizations(errors, (*path, "name_localizations"), command.get("name_localizations"), 32)
    _localizations(errors, (*path, "description_localizations"), command.get("description_localizations"), 100)
    _integer(errors, (*path, "default_member_permissions"), command.get("default_member_permissions"), 0, (1 << 54) - 1)
    _boolean(errors, (*path, "dm_permission"), command.get("dm_permission"))
    _boolean(errors, (*path, "nsfw"), command.get("nsfw"))
    for key, values in (("contexts", {0, 1, 2}), ("integration_types", {0, 1})):
        items = _array(errors, (*path, key), command.get(key), 1, len(values))
        for j, item in enumerate(items):
            _integer(errors, (*path, key, j), item, choices=values)
    if kind == 1:
        _options(errors, (*path, "options"), command.get("options"), level=0)
    if _command_size(command) > MAX_COMMAND_SIZE:
        errors.add(path, "APPLICATION_COMMAND_TOO_LARGE", f"Command exceeds maximum size ({MAX_COMMAND_SIZE})")


def _options(errors: Errors, path: Path, value: Any, *, level: int) -> None:
    """``level`` 0: a command's options; 1: a group's (subcommands only); 2: a subcommand's (no subcommands)."""
    options = _array(errors, path, value, 0, 25)
    names: set[str] = set()
    optional_seen = False
    kinds = [o.get("type") for o in options if isinstance(o, dict)]
    nested = [k in (1, 2) for k in kinds]
    if level == 0 and any(nested) and not all(nested):
        errors.add(
            path,
            "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
            "Sub-command and sub-command group option types are mutually exclusive to all other types",
        )
    for i, raw in enumerate(options):
        here = (*path, i)
        option = _object(errors, here, raw, required=True)
        if option is None:
            continue
        allowed = {1, 2} if level == 0 and any(nested) else {1} if level == 1 else set(range(3, 12))
        if level == 0 and not any(nested):
            allowed = set(range(3, 12))
        kind = _integer(errors, (*here, "type"), option.get("type"), choices=allowed, required=True)
        _chat_name(errors, (*here, "name"), option.get("name"))
        _string(errors, (*here, "description"), option.get("description"), 1, 100, required=True)
        _localizations(errors, (*here, "name_localizations"), option.get("name_localizations"), 32)
        _localizations(errors, (*here, "description_localizations"), option.get("description_localizations"), 100)
        name = option.get("name")
        if isinstance(name, str):
            if name in names:
                errors.add(
                    (*here, "name"), "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS", "Option names must be unique"
                )
            names.add(name)
        if kind in (1, 2):
            _options(errors, (*here, "options"), option.get("options"), level=1 if kind == 2 else 2)
            continue
        required = option.get("required")
        _boolean(errors, (*here, "required"), required)
        if required and optional_seen:
            errors.add(
                (*here, "required"),
                "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                "Required options must be placed before non-required options",
            )
        if not required:
            optional_seen = True
        choices = _array(errors, (*here, "choices"), option.get("choices"), 0, 25)
        if choices and kind not in (3, 4, 10):
            errors.add(
                (*here, "choices"),
                "APPLICATION_COMMAND_OPTION_CHOICES_INVALID",
                "Only string, integer and number options have choices",
            )
        if option.get("autocomplete") and choices:
            errors.add(
                (*here, "autocomplete"),
                "APPLICATION_COMMAND_OPTION_AUTOCOMPLETE_WITH_CHOICES",
                "Autocomplete cannot be set with choices",
            )
        for j, raw_choice in enumerate(choices):
            choice = _object(errors, (*here, "choices", j), raw_choice, required=True) or {}
            _string(errors, (*here, "choices", j, "name"), choice.get("name"), 1, 100, required=True)
            value = choice.get("value")
            if kind == 3:
                _string(errors, (*here, "choices", j, "value"), value, 0, 6000, required=True)
            elif kind == 4:
                _integer(errors, (*here, "choices", j, "value"), value, -(2**53) + 1, 2**53 - 1, required=True)
            else:
                _number(errors, (*here, "choices", j, "value"), value)
        if kind == 3:
            _integer(errors, (*here, "min_length"), option.get("min_length"), 0, 6000)
            _integer(errors, (*here, "max_length"), option.get("max_length"), 1, 6000)
        if kind == 7:
            types = _array(errors, (*here, "channel_types"), option.get("channel_types"), 0, 20)
            for j, channel_type in enumerate(types):
                _integer(errors, (*here, "channel_types", j), channel_type)


def _command_size(command: dict[str, Any]) -> int:
    """Characters of every name, description and choice value of a command, localizations included."""

    def text(value: Any) -> int:
        return len(value) if isinstance(value, str) else len(str(value)) if value is not None else 0

    def localized(item: dict[str, Any]) -> int:
        total = text(item.get("name")) + text(item.get("description"))
        for key in ("name_localizations", "description_localizations"):
            table = item.get(key)
            if isinstance(table, dict):
                total += sum(text(v) for v in table.values())
        return total

    def option_size(option: Any) -> int:
        if not isinstance(option, dict):
            return 0
        total = localized(option)
        for choice in option.get("choices") or []:
            if isinstance(choice, dict):
                total += localized(choice) + text(choice.get("value"))
        return total + sum(option_size(o) for o in option.get("options") or [])

    return localized(command) + sum(option_size(o) for o in command.get("options") or [])


# --- permissions --------------------------------------------------------------------------------------
def compute_permissions(
    *,
    member_id: str,
    member_roles: set[str],
    guild_id: str,
    owner_id: str,
    roles: list[dict[str, Any]],
    overwrites: list[dict[str, Any]],
) -> int:
    """A member's permissions in a channel, computed as Discord documents it: the guild owner has all;
    then @everyone's and the member's roles' permissions; Administrator gives all; then the channel's
    overwrites in order: @everyone's, the roles' (denies, then allows), the member's."""
    if member_id == owner_id:
        return ALL_PERMISSIONS
    by_id = {str(r["id"]): r for r in roles}
    everyone = by_id.get(guild_id)
    perms = int(everyone["permissions"]) if everyone else 0
    for role_id in member_roles:
        role = by_id.get(role_id)
        if role is not None:
            perms |= int(role["permissions"])
    if perms & ADMINISTRATOR:
        return ALL_PERMISSIONS
    table = {str(o["id"]): o for o in overwrites}
    if guild_id in table:
        perms &= ~int(table[guild_id].get("deny", 0))
        perms |= int(table[guild_id].get("allow", 0))
    deny = allow = 0
    for role_id in member_roles:
        overwrite = table.get(role_id)
        if overwrite is not None and overwrite.get("type", 0) == 0:
            deny |= int(overwrite.get("deny", 0))
            allow |= int(overwrite.get("allow", 0))
    perms = (perms & ~deny) | allow
    own = table.get(member_id)
    if own is not None:
        perms = (perms & ~int(own.get("deny", 0))) | int(own.get("allow", 0))
    return perms
