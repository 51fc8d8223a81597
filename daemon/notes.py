"""The rep's notes on an event, read for what they say on purpose: lines that start with a label.

Pure text in, values out. Everything else in the notes is free text, shown as the rep wrote it.

The labels, each at the start of a line, case as you like:

    Homework: send the SSO metadata; name an internal admin      (items split at `;`,
    Promised: SSO in the first week                               or a `- ` list under
    Push-back: finance, over the cost centre change               the label line)
    Also involved: Ravi Shah (security), Mia Lopez (finance)      (people, split at `;` or `,`)
    Follow-up: a sentence or two for the customer, as you would say it to them

`Push back:`/`Pushback:` and `Follow up:`/`Followup:` count too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from daemon.model import Person

HOMEWORK, PROMISED, PUSH_BACK, FOLLOW_UP, ALSO_INVOLVED = (
    "homework",
    "promised",
    "push-back",
    "follow-up",
    "also involved",
)
_LABEL = re.compile(
    r"\s*(homework|promised|push[- ]?back|follow[- ]?up|also involved)\s*:\s*(.*?)\s*$", re.IGNORECASE
)
_CANONICAL = {
    re.sub(r"[- ]", "", label): label for label in (HOMEWORK, PROMISED, PUSH_BACK, FOLLOW_UP, ALSO_INVOLVED)
}
_BULLET = re.compile(r"\s*(?:[-*•]|\d+[.)])\s+(.*\S)")
_NAMED = re.compile(r"(?P<name>[^()]*?)\s*(?:\((?P<role>[^()]*)\))?\s*$")


@dataclass(frozen=True)
class Labelled:
    """One labelled line: its label, the rest of its line, the list under it, and which lines it spans."""

    label: str
    text: str
    bullets: tuple[str, ...]
    lines: range


@dataclass(frozen=True)
class Named:
    """Someone the notes name: `Ravi Shah (security)` is Named("Ravi Shah", "security")."""

    name: str
    role: str = ""


def labelled(notes: str) -> list[Labelled]:
    """Every labelled line in the notes, in order, with the `- ` list that follows it."""
    lines = notes.splitlines()
    found: list[Labelled] = []
    i = 0
    while i < len(lines):
        match = _LABEL.match(lines[i])
        if not match:
            i += 1
            continue
        label = _CANONICAL[re.sub(r"[- ]", "", match.group(1).lower())]
        bullets = []
        j = i + 1
        while j < len(lines) and (bullet := _BULLET.match(lines[j])):
            bullets.append(bullet.group(1).strip())
            j += 1
        found.append(Labelled(label, match.group(2), tuple(bullets), range(i, j)))
        i = j
    return found


def _items(notes: str, label: str) -> tuple[str, ...]:
    """The items of every line with this label: split at `;` on the line, one per list line under it."""
    items: list[str] = []
    for line in labelled(notes):
        if line.label == label:
            items += [part for part in line.text.split(";") if part.strip()] + list(line.bullets)
    return tuple(item for item in (_tidy(i) for i in items) if item)


def _tidy(item: str) -> str:
    """An item without the full stop a sentence would end with: it is shown in a list."""
    item = item.strip()
    return item[:-1].rstrip() if item.endswith(".") and not item.endswith("..") else item


def homework(notes: str) -> tuple[str, ...]:
    """The tasks agreed with the customer, from `Homework:` lines or lists in the rep's notes."""
    return _items(notes, HOMEWORK)


def promised(notes: str) -> tuple[str, ...]:
    """What the rep promised the customer, from `Promised:` lines or lists."""
    return _items(notes, PROMISED)


def push_back(notes: str) -> tuple[str, ...]:
    """Who or what on the customer's side may push back, from `Push-back:` lines or lists."""
    return _items(notes, PUSH_BACK)


def follow_up(notes: str) -> str:
    """The customer-safe line the rep left for a later check-in: the first `Follow-up:` line's text
    (or its list, joined). "" when there is none."""
    for line in labelled(notes):
        if line.label == FOLLOW_UP and (text := line.text.strip() or " ".join(line.bullets)):
            return text
    return ""


def also_involved(notes: str) -> tuple[Named, ...]:
    """The people on `Also involved:` lines: `Name` or `Name (role)`, split at `;` or `,`."""
    named: list[Named] = []
    for line in labelled(notes):
        if line.label != ALSO_INVOLVED:
            continue
        for item in [*_split_people(line.text), *line.bullets]:
            match = _NAMED.match(item.strip())
            if match and _tidy(match.group("name")):
                named.append(Named(_tidy(match.group("name")), (match.group("role") or "").strip()))
            elif _tidy(item):  # not `Name (role)`: the item as the rep wrote it
                named.append(Named(_tidy(item)))
    return tuple(named)


def _split_people(text: str) -> list[str]:
    """`Ravi Shah (security, EMEA), Mia Lopez` → the two people: commas inside parentheses stay."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += (char == "(") - (char == ")")
        if char in ",;" and depth <= 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [part for part in [*parts, current] if part.strip()]


def not_invited(notes: str, invited: Iterable[Person]) -> tuple[Named, ...]:
    """The people on `Also involved:` lines who are not among `invited`.

    Only that line is read: a name in free text is never guessed at. Someone counts as invited when
    their name, their address, or (for a name of one word) their first name matches, case aside.
    """
    known: set[str] = set()
    for person in invited:
        known |= {person.email.lower(), person.natural_name.lower()}
        known |= {f"first:{person.first_name.lower()}"} if person.first_name else set()
    missing = []
    for named in also_involved(notes):
        key = named.name.lower()
        address = re.search(r"[^\s<>]+@[^\s<>]+", key)
        on_invite = (
            key in known
            or (address is not None and address.group(0) in known)
            or (" " not in key and f"first:{key}" in known)
        )
        if not on_invite and named not in missing:
            missing.append(named)
    return tuple(missing)


def other_notes(notes: str) -> str:
    """The notes without their labelled lines and lists: what the rep wrote that has no label."""
    taken = {i for line in labelled(notes) for i in line.lines}
    kept = [line for i, line in enumerate(notes.splitlines()) if i not in taken]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()
