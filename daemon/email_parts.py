"""From one Markdown body, both parts of an email: HTML in the shared layout, CSS inlined, and plain text.

Values a template prints are escaped for Markdown first, so event text never becomes markup or a link.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Sequence
from typing import Any

import css_inline
from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore, inline, linkify, replace, smartquotes, text_join
from markdown_it.token import Token

# Every character that can start or shape Markdown, backslash-escaped in printed values. Quotes and
# apostrophes are left alone so that typography treats them as the template's own.
_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!<>|~&=])")

# Mail clients make links of what looks like an address on the web, even in plain text: an invisible
# word joiner after `://` and `www.` in event text keeps them from it.
_UNLINK = re.compile(r"(?i)(://|\bwww\.)")

_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": True}).enable(
    ["replacements", "smartquotes", "strikethrough"]
)


class _InlineRuns:
    """The core rules that work on one inline run at a time (a paragraph's or a list item's text), run
    once per distinct run: most runs are a template's own words, the same in every email it writes.

    The tokens of a run are shared by the emails that have it, so nothing may change parsed tokens. A
    document that defines link references is parsed in full: its runs depend on them. A long run is
    most likely event text (a rep's notes) that no other email has: it is parsed and not kept."""

    RULES = (inline, linkify, replace, smartquotes, text_join)  # markdown-it's own order
    NAMES = ("inline", "linkify", "replacements", "smartquotes", "text_join")
    LIMIT = 2048  # distinct runs kept; then the memo starts again
    LONGEST = 400  # characters of a run kept

    def __init__(self) -> None:
        self.parsed: dict[str, list[Token]] = {}

    def __call__(self, state: StateCore) -> None:
        if state.env.get("references"):
            self._parse(state)
            return
        for token in state.tokens:
            if token.type != "inline":
                continue
            children = self.parsed.get(token.content)
            if children is None:
                self._parse(StateCore(token.content, state.md, state.env, [token]))
                if len(token.content) <= self.LONGEST:
                    if len(self.parsed) >= self.LIMIT:
                        self.parsed.clear()
                    self.parsed[token.content] = token.children or []
            else:
                token.children = children

    def _parse(self, state: StateCore) -> None:
        for rule in self.RULES:
            rule(state)


_runs = _InlineRuns()
_md.core.ruler.disable(list(_InlineRuns.NAMES))
_md.core.ruler.after("block", "inline_runs", _runs)
# Remote stylesheets would be a network fetch at render time; the layout's <style> is all there is.
_inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


class MarkdownSafe(str):
    """Markdown a filter made on purpose (a list, a quote, a link): printed as it is, not escaped."""

    __slots__ = ()


def escape(value: Any) -> str:
    """A value as literal Markdown text: every special character escaped, one line per line of the value.

    A value of several lines loses the spaces around each line (at a line's start they would make a code
    block) and keeps its line breaks as hard breaks; a one-line value is kept as it is (`", "`).
    """
    if value is None:
        return ""
    if isinstance(value, MarkdownSafe):
        return value
    text = unlink(str(value))
    if "\n" not in text and "\r" not in text:
        return _SPECIAL.sub(r"\\\1", text)
    lines = [_SPECIAL.sub(r"\\\1", line.strip()) for line in text.splitlines()]
    return "\\\n".join(line for line in lines if line)


def unlink(text: str) -> str:
    """A word joiner after `://` and `www.`: the text reads the same, and no client links it."""
    return _UNLINK.sub("\\1\u2060", text)


# -- filters a Markdown template can use ---------------------------------------------------------------


def bullets(items: Iterable[Any]) -> MarkdownSafe:
    """`- item` lines, each item escaped."""
    return MarkdownSafe("\n".join(f"- {escape(str(item).strip())}" for item in items))


def quote(text: Any) -> MarkdownSafe:
    """Text (the rep's notes) as a quoted block, its line breaks kept."""
    lines = [escape(line.strip()) for line in str(text or "").splitlines() if line.strip()]
    return MarkdownSafe(
        "\n".join(f"> {line}" + ("\\" if i < len(lines) - 1 else "") for i, line in enumerate(lines))
    )


def mailto(person: Any) -> MarkdownSafe:
    """An address as a mail link: `ann@globex.com`, clickable in the HTML part."""
    address = str(person["email"] if isinstance(person, dict) else person)
    # Percent-encoded in the link: `?`, `&` and `=` may be in a local part, and in a mailto URL they
    # would add a Cc or a body.
    target = urllib.parse.quote(address, safe="@")
    return MarkdownSafe(f"[{escape(address)}](mailto:{escape(target)})")


def contact(person: dict[str, Any]) -> MarkdownSafe:
    """`Ann Lee <ann@globex.com>`, or the address alone when the person has no name."""
    if not person.get("name") or person["name"] == person["email"]:
        return mailto(person)
    return MarkdownSafe(f"{escape(person['name'])} \\<{mailto(person)}\\>")


def contacts(people: Iterable[dict[str, Any]]) -> MarkdownSafe:
    """One `- Ann Lee <ann@globex.com>` line per person."""
    return MarkdownSafe("\n".join(f"- {contact(p)}" for p in people))


FILTERS = {"bullets": bullets, "quote": quote, "mailto": mailto, "contact": contact, "contacts": contacts}


# -- the two parts --------------------------------------------------------------------------------------


def parse(markdown: str) -> list[Token]:
    return _md.parse(markdown)


def html_body(tokens: Sequence[Token]) -> str:
    return _md.renderer.render(tokens, _md.options, {})


def inline_css(document: str) -> str:
    """The layout's CSS moved onto each element, as mail clients that drop <style> need; @media kept."""
    return _inliner.inline(document)


def plain_text(tokens: Sequence[Token]) -> str:
    """The text part, written from the same tokens as the HTML: headings in capitals, lists as `- `,
    quotes indented, links as `text <url>`."""
    out: list[str] = []
    prefix: list[str] = []  # the indent of the blocks we are inside: quotes and list items
    lists: list[list[int]] = []  # per open list: [next number], or [-1] for a bullet list
    pending_marker = ""
    heading = False

    def block(text: str) -> None:
        nonlocal pending_marker
        lead = "".join(prefix)
        first = lead[: len(lead) - len(pending_marker)] + pending_marker if pending_marker else lead
        lines = text.split("\n")
        out.append("\n".join((first if i == 0 else lead) + line for i, line in enumerate(lines)))
        pending_marker = ""

    for i, token in enumerate(tokens):
        kind = token.type
        if kind in ("bullet_list_open", "ordered_list_open"):
            start = int(token.attrGet("start") or 1) if kind == "ordered_list_open" else -1
            lists.append([start])
        elif kind in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
        elif kind == "list_item_open":
            number = lists[-1][0]
            marker = "- " if number < 0 else f"{number}. "
            if number >= 0:
                lists[-1][0] += 1
            prefix.append(" " * len(marker))
            pending_marker = marker
        elif kind == "list_item_close":
            prefix.pop()
        elif kind == "blockquote_open":
            prefix.append("    ")
        elif kind == "blockquote_close":
            prefix.pop()
        elif kind == "heading_open":
            heading = True
        elif kind == "heading_close":
            heading = False
        elif kind == "inline":
            block(_inline_text(token.children or [], upper=heading))
        elif kind in ("fence", "code_block"):
            block("    " + token.content.rstrip("\n").replace("\n", "\n    "))
        elif kind == "hr":
            block("----")
        if kind in _BLOCK_ENDS and not _tight(tokens, i) and not _nested_list_end(tokens, i):
            out.append("")
    text = "\n".join(out)
    # Only blank lines go from the start: a quote or list opening the email keeps its indent.
    return re.sub(r"\n{3,}", "\n\n", text).lstrip("\n").rstrip() + "\n"


_BLOCK_ENDS = {
    "paragraph_close",
    "heading_close",
    "bullet_list_close",
    "ordered_list_close",
    "blockquote_close",
    "fence",
    "code_block",
    "hr",
}


def _tight(tokens: Sequence[Token], i: int) -> bool:
    """A paragraph inside a tight list item: no blank line after it."""
    return tokens[i].type == "paragraph_close" and tokens[i].hidden


def _nested_list_end(tokens: Sequence[Token], i: int) -> bool:
    """The end of a list inside an item of a tight list: the next item follows without a blank line."""
    if tokens[i].type not in ("bullet_list_close", "ordered_list_close"):
        return False
    # The item's own paragraph sits at the nested list's level; a tight list hides its paragraphs.
    own = next(
        (t for t in reversed(tokens[:i]) if t.type == "paragraph_close" and t.level == tokens[i].level), None
    )
    return own is not None and own.hidden


def _inline_text(children: Sequence[Token], upper: bool = False) -> str:
    """The words in capitals for a heading; never the addresses of its links."""
    parts: list[str] = []
    href: list[str] = []
    link_start: list[int] = []
    for child in children:
        kind = child.type
        if kind in ("text", "code_inline", "text_special"):
            parts.append(child.content.upper() if upper else child.content)
        elif kind == "softbreak":
            parts.append(" ")
        elif kind == "hardbreak":
            parts.append("\n")
        elif kind == "image":
            parts.append(child.content)
        elif kind == "link_open":
            href.append(str(child.attrGet("href") or ""))
            link_start.append(len(parts))
        elif kind == "link_close":
            url = href.pop()
            label = "".join(parts[link_start.pop() :])
            target = urllib.parse.unquote(url.removeprefix("mailto:")) if url.startswith("mailto:") else url
            if target and target.lower() != label.lower():
                parts.append(f" <{target}>")
    return "".join(parts)
