"""Pure rendering helpers: text that fits Discord's limits by construction."""

from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import quote

#: Discord's documented limits (characters unless noted).
MESSAGE_LIMIT = 2000
EMBED_TITLE_LIMIT = 256
EMBED_DESCRIPTION_LIMIT = 4096
EMBED_FIELDS_LIMIT = 25
EMBED_FIELD_NAME_LIMIT = 256
EMBED_FIELD_VALUE_LIMIT = 1024
EMBED_FOOTER_LIMIT = 2048
EMBED_AUTHOR_LIMIT = 256
EMBED_TOTAL_LIMIT = 6000
EMBEDS_PER_MESSAGE = 10

ELLIPSIS = "…"


def truncate(text: str, limit: int, marker: str = ELLIPSIS) -> str:
    """``text`` cut to at most ``limit`` characters, visibly (ending in ``marker``) when cut."""
    if limit <= 0:
        return ""
    if len(text) <= limit:
        return text
    if limit <= len(marker):
        return marker[:limit]
    return text[: limit - len(marker)] + marker


def embed_length(embed: dict[str, Any]) -> int:
    """Characters Discord counts toward the 6000 limit of one message's embeds."""
    total = len(embed.get("title") or "") + len(embed.get("description") or "")
    total += len((embed.get("footer") or {}).get("text") or "") + len((embed.get("author") or {}).get("name") or "")
    total += sum(len(f.get("name") or "") + len(f.get("value") or "") for f in embed.get("fields") or [])
    return total


def fit_embed(embed: dict[str, Any], budget: int = EMBED_TOTAL_LIMIT) -> dict[str, Any]:
    """``embed`` within every per-embed limit and within ``budget`` characters, trimmed visibly."""
    out = dict(embed)
    if out.get("title"):
        out["title"] = truncate(out["title"], EMBED_TITLE_LIMIT)
    if out.get("description"):
        out["description"] = truncate(out["description"], EMBED_DESCRIPTION_LIMIT)
    if out.get("footer"):
        out["footer"] = {**out["footer"], "text": truncate(out["footer"].get("text") or "", EMBED_FOOTER_LIMIT)}
    if out.get("author"):
        out["author"] = {**out["author"], "name": truncate(out["author"].get("name") or "", EMBED_AUTHOR_LIMIT)}
    fields = [
        {
            **f,
            "name": truncate(str(f.get("name") or "\u200b"), EMBED_FIELD_NAME_LIMIT),
            "value": truncate(str(f.get("value") or "\u200b"), EMBED_FIELD_VALUE_LIMIT),
        }
        for f in (out.get("fields") or [])[:EMBED_FIELDS_LIMIT]
    ]
    out["fields"] = fields
    while embed_length(out) > budget and out["fields"]:
        out["fields"] = out["fields"][:-1]
    excess = embed_length(out) - budget
    if excess > 0 and out.get("description"):
        out["description"] = truncate(out["description"], max(1, len(out["description"]) - excess))
    excess = embed_length(out) - budget
    if excess > 0 and out.get("title"):
        out["title"] = truncate(out["title"], max(1, len(out["title"]) - excess))
    if not out["fields"]:
        out.pop("fields")
    return out


def pack_embeds(embeds: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Group embeds, in order, into messages of at most 10 embeds and 6000 characters."""
    messages: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for embed in embeds:
        embed = fit_embed(embed)
        length = embed_length(embed)
        if current and (len(current) >= EMBEDS_PER_MESSAGE or size + length > EMBED_TOTAL_LIMIT):
            messages.append(current)
            current, size = [], 0
        current.append(embed)
        size += length
    if current:
        messages.append(current)
    return messages


def code_safe(text: str) -> str:
    """Text for inside a code span or block (where markdown and mentions are not rendered): it cannot close the
    code early (every backtick becomes a look-alike)."""
    return text.replace("`", "\u02cb")  # a look-alike of the backtick


#: Characters escaped anywhere: emphasis, strike-through, spoilers, code, masked links, mentions and emoji (``<``).
_ESCAPE_ALWAYS = re.compile(r"([\\*_~|`\[\]<])")
#: Markdown that works only at the start of a line: headers and subtext (``#``, ``-#``), quotes (``>``), lists (``-``,
#: ``+``, ``1.``).
_ESCAPE_LINE_START = re.compile(r"^(\s*)([#>+-]|[0-9]+\.)", re.MULTILINE)
_MASS_MENTION = re.compile(r"@(everyone|here)")


def _escape_line_start(match: re.Match[str]) -> str:
    mark = match[2]
    return match[1] + (mark[:-1] + "\\." if mark[0].isdigit() else "\\" + mark)


def plain(text: str) -> str:
    """User- or W&B-controlled text (names, config values, tags, notes, metric names) shown literally in a place
    where Discord renders markdown: message content, embed titles, descriptions and field names and values.

    The one escaping function: every markdown character gets a backslash, which Discord shows as the character
    alone (``**``, ``__``, ``~~``, ``||``, backticks, ``[x](url)`` masked links, ``<@id>``, ``<@&id>``, ``<#id>``,
    ``</cmd:id>``, ``<:emoji:id>``; ``#``, ``-``, ``+``, ``>`` and ``1.`` at the start of a line); ``@everyone`` and
    ``@here`` get a zero-width space, as discord.py's ``escape_mentions`` does. Backslashes are escaped too, so a
    name ending in one cannot escape the markup around it. Cut the text *before* escaping it (``plain(truncate(..))``),
    so a cut never splits an escape. Inside code spans and blocks use :func:`code_safe` instead; in places that do
    not render markdown (footers, author names, thread names, button labels) show the text as it is."""
    text = _ESCAPE_ALWAYS.sub(r"\\\1", text)
    text = _ESCAPE_LINE_START.sub(_escape_line_start, text)
    return _MASS_MENTION.sub("@\u200b\\1", text)


#: Characters a URL inside ``[text](url)`` may not hold as they are (they would end the link or the URL early).
_URL_UNSAFE = ' ()<>[]`"|\\'


def safe_url(url: str | None) -> str | None:
    """``url`` fit for ``[text](url)`` and an embed's ``url``: http(s) only, characters that would end the link
    percent-encoded; None for anything else."""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or any(c.isspace() for c in url):
        return None
    return "".join(quote(c, safe="") if c in _URL_UNSAFE else c for c in url)


def link(text: str, url: str | None) -> str:
    """``text`` (escaped with :func:`plain`) as a masked link to ``url``, or just the escaped text without a safe
    url."""
    target = safe_url(url)
    return f"[{plain(text)}]({target})" if target else plain(text)


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 run``, ``2 runs``, ``1,000 runs`` (``nouns``: an irregular plural)."""
    return f"{count:,} {noun if count == 1 else (nouns or noun + 's')}"


def format_hours(hours: float, noun: str = "GPU", *, short: bool = False) -> str:
    """An amount of GPU-hours (or job-hours: ``noun="job"``) that never reads 0.0 when it is not zero: hours with
    one decimal, else minutes, else seconds (``3.5 GPU-hours``, ``12 GPU-minutes``, ``36 GPU-seconds``;
    ``short``: ``3.5 GPU-h``, ``12 GPU-min``, ``36 GPU-s``)."""
    hours = max(0.0, hours) if math.isfinite(hours) else hours
    if not math.isfinite(hours):
        amount, unit = str(hours), ("h" if short else "hours")
    elif hours == 0 or round(hours, 1) > 0:
        amount, unit = f"{hours:,.1f}" if hours else "0", "h" if short else "hours"
    elif hours * 60 >= 1:
        amount, unit = f"{hours * 60:.0f}", "min" if short else "minutes"
    elif hours * 3600 >= 0.5:
        amount, unit = f"{hours * 3600:.0f}", "s" if short else "seconds"
    else:
        return f"under 1 {noun}-{'s' if short else 'second'}"
    if not short and amount == "1":
        unit = unit.removesuffix("s")
    return f"{amount} {noun}-{unit}"


def format_number(value: float) -> str:
    """A compact, readable number: 0.1235, 1.235e+08, 42 (and inf, -inf, nan as such)."""
    if not math.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = int(max(0, seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def log_tail_block(lines: list[str], limit: int) -> str:
    """The last lines of a log in a code block of at most ``limit`` characters (older lines dropped first)."""
    kept: list[str] = []
    size = len("```\n\n```")
    for line in reversed(lines):
        text = code_safe(truncate(line, 300))
        if size + len(text) + 1 > limit:
            break
        kept.insert(0, text)
        size += len(text) + 1
    return "```\n" + "\n".join(kept) + "\n```"


def page_lines(lines: list[str], *, per_page: int, budget: int = EMBED_DESCRIPTION_LIMIT - 200) -> list[list[str]]:
    """``lines`` in pages of at most ``per_page`` lines and ``budget`` characters each (a longer line is cut):
    a long answer is paged, never cut."""
    pages: list[list[str]] = []
    page: list[str] = []
    size = 0
    for raw in lines:
        line = truncate(raw, budget)
        if page and (len(page) >= per_page or size + len(line) + 1 > budget):
            pages.append(page)
            page, size = [], 0
        page.append(line)
        size += len(line) + 1
    if page or not pages:
        pages.append(page)
    return pages


def paged_embeds(
    embed: dict[str, Any], lines: list[str], *, per_page: int, head: str = "", code: bool = False
) -> list[dict[str, Any]]:
    """One embed per page of ``lines`` (``head`` first on each, e.g. a table header), "page i of n" in the footer
    when there is more than one."""
    pages = page_lines(lines, per_page=per_page, budget=EMBED_DESCRIPTION_LIMIT - 200 - len(head))
    out = []
    for number, page in enumerate(pages, 1):
        body = "\n".join(([head] if head else []) + page)
        one = {**embed, "description": f"```\n{body}\n```" if code else body}
        if len(pages) > 1:
            footer = (embed.get("footer") or {}).get("text")
            one["footer"] = {"text": f"page {number} of {len(pages)}" + (f" · {footer}" if footer else "")}
        out.append(fit_embed(one))
    return out
