"""The light reader gives exactly what the full icalendar parse gives: every corpus file, generated
feeds and hand-written odd events synced both ways must give the same batch, field by field.

The light reader only ever replaces icalendar for events it is sure of; these tests are what makes
"sure" true (daemon/sources/ics_light.py).
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from benchmarks.bench_ics_feed import generate, render
from daemon.errors import SourceError
from daemon.sources import SyncBatch
from daemon.sources.ics import IcsSource
from daemon.sources.ics_events import EventReader
from daemon.sources.ics_light import read_single, tag_words
from tests.support.corpus import CORPUS, FILES

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TAGS = ("#closing", "#kickoff", "#won", "#signed", "#lost", "#deal:")
BLOCK = re.compile(r"^BEGIN:VEVENT\r?\n.*?^END:VEVENT\r?\n", re.MULTILINE | re.DOTALL)

pytestmark = pytest.mark.filterwarnings("ignore:.*globally unique TZID")


def sync_both(
    path: Path, state: tuple[Any, Any] = (None, None), tags: tuple[str, ...] = TAGS, **options: Any
) -> tuple[Any, Any]:
    """One sync of `path` with the light reader and one without: each a SyncBatch or a SourceError."""
    outcomes = []
    for light, earlier in zip((True, False), state, strict=True):
        source = IcsSource(path.name, path=path, tags=tags, light=light, **options)
        try:
            outcomes.append(source.sync(earlier, NOW))
        except SourceError as exc:
            outcomes.append(exc)
    return outcomes[0], outcomes[1]


def assert_same(light: SyncBatch | SourceError, full: SyncBatch | SourceError) -> None:
    if isinstance(full, SourceError) or isinstance(light, SourceError):
        assert str(light) == str(full)
        return
    assert len(light.upserted) == len(full.upserted)
    for ours, theirs in zip(light.upserted, full.upserted, strict=True):
        assert ours == theirs, f"{theirs.id}:\n light {ours}\n full  {theirs}"
        assert ours.start.utcoffset() == theirs.start.utcoffset() == timedelta(0)
    assert light.removed == full.removed
    assert Counter(light.problems) == Counter(full.problems)
    assert light.unusable == full.unusable
    assert light.state == full.state


@pytest.mark.parametrize("name", FILES)
def test_given_a_real_world_calendar_then_the_light_reader_gives_what_icalendar_gives(name: str) -> None:
    # Given a corpus file, when it is synced with the light reader and without it over a wide window
    light, full = sync_both(
        CORPUS / name,
        default_zone="America/New_York",
        window_past=timedelta(days=365 * 60),
        window_future=timedelta(days=365 * 20),
    )
    # Then both give the same events, removals, problems and state (or fail the same way)
    assert_same(light, full)


def test_the_corpus_is_there_for_the_light_reader() -> None:
    assert len(FILES) >= 100, f"only {len(FILES)} calendar files under {CORPUS}"


@pytest.mark.parametrize("tags", [TAGS, ()], ids=["tagged-to-icalendar", "tagged-read-light"])
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_given_a_generated_feed_and_its_edit_then_both_readings_agree_at_both_syncs(
    tmp_path: Path, seed: int, tags: tuple[str, ...]
) -> None:
    # Given a generated sales calendar (time zones, all-day, cancelled, rooms, tags, series), its
    # tagged events left to icalendar or, without tag words, read by the light reader too
    feed = generate(300, seed=seed, now=NOW)
    path = tmp_path / "feed.ics"
    path.write_text(render(feed.events, NOW - timedelta(hours=1)), encoding="utf-8", newline="")
    options = {"default_zone": "Europe/Berlin", "max_bytes": 10**8}

    # When it is synced both ways, then edited and synced again from each one's state
    first = sync_both(path, tags=tags, **options)
    assert_same(*first)
    path.write_text(render(feed.changed, NOW), encoding="utf-8", newline="")
    states = tuple(b.state for b in first)
    assert_same(*sync_both(path, (states[0], states[1]), tags=tags, **options))


def test_given_a_generated_feed_then_the_light_reader_reads_its_plain_events_and_leaves_the_tagged() -> None:
    # Given a generated feed: its events one by one
    text = render(generate(300, seed=5, now=NOW).events, NOW)
    reader = EventReader("Europe/Berlin")
    read, tagged, plain = 0, 0, 0
    for block in BLOCK.findall(text):
        result = read_single(block, "uid", reader, tag_words(TAGS))
        if "#closing" in block or "#kickoff" in block:
            tagged += 1
            assert result is None, "a tagged event must be read by icalendar"
        elif "RRULE" not in block:
            plain += 1
            read += result is not None
    # Then it reads nearly every plain event itself: the speed-up is real, not the fallback every time
    assert tagged and read >= 0.95 * plain, (read, plain)


def calendar(*lines: str, header: str = "") -> str:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\n"
        + header
        + "\r\n".join(lines)
        + "\r\nEND:VCALENDAR\r\n"
    )


def event(*lines: str, uid: str | None = "odd@x") -> str:
    head = ["BEGIN:VEVENT", "DTSTAMP:20260101T000000Z"] + ([f"UID:{uid}"] if uid else [])
    return "\r\n".join([*head, *lines, "END:VEVENT"])


WHEN = "DTSTART:20260310T090000Z\r\nDTEND:20260310T100000Z"
BERLIN_ZONE = "\r\n".join(
    [
        "BEGIN:VTIMEZONE",
        "TZID:W. Europe Standard Time",
        "BEGIN:STANDARD",
        "DTSTART:16010101T030000",
        "TZOFFSETFROM:+0200",
        "TZOFFSETTO:+0100",
        "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10",
        "END:STANDARD",
        "BEGIN:DAYLIGHT",
        "DTSTART:16010101T020000",
        "TZOFFSETFROM:+0100",
        "TZOFFSETTO:+0200",
        "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3",
        "END:DAYLIGHT",
        "END:VTIMEZONE",
        "",
    ]
)
ODD = {
    "utf8 folded mid-character": calendar(
        event(WHEN, "SUMMARY:Caf\xc3\r\n \xa9 r\xc3\xa9union", "DESCRIPTION:na\xc3\xaf\r\n\tve")
    ),
    "escapes": calendar(event(WHEN, r"SUMMARY:a\, b\; c\\d\nnext\Nline\:x\t", r"DESCRIPTION:C:\\path\,x")),
    "quoted cn with commas and colons": calendar(
        event(
            WHEN,
            'ORGANIZER;CN="Belson, Gavin: CEO":mailto:gavin@hooli.example',
            'ATTENDEE;CN="Doe, Jane";PARTSTAT=ACCEPTED;ROLE=OPT-PARTICIPANT:mailto:JANE@Acme.Example',
            'ATTENDEE;CN="a;b";CUTYPE=ROOM:mailto:room@acme.example',
        )
    ),
    "unquoted cn with a comma": calendar(event(WHEN, "ATTENDEE;CN=Doe, Jane:mailto:jane@acme.example")),
    "email parameter": calendar(
        event(
            WHEN,
            "ORGANIZER;EMAIL=carol@acme.example;CN=Carol:urn:uuid:1234",
            'ATTENDEE;EMAIL="dan@acme.example":urn:uuid:5678',
            "ATTENDEE:urn:uuid:9999",
            "ATTENDEE;CUTYPE=RESOURCE:urn:uuid:projector",
        )
    ),
    "mailto case and blanks": calendar(
        event(WHEN, "ATTENDEE:MAILTO:Eve@Acme.Example", "ATTENDEE: mailto:frank@acme.example ", "ATTENDEE:")
    ),
    "bad addresses": calendar(
        event(WHEN, "ATTENDEE;CN=x:mailto:not an address", "ORGANIZER:mailto:@nowhere")
    ),
    "durations": calendar(
        event("DTSTART:20260310T090000Z", "DURATION:PT1H30M", uid="d1"),
        event("DTSTART;VALUE=DATE:20260310", "DURATION:P2D", uid="d2"),
        event("DTSTART;VALUE=DATE:20260310", "DURATION:PT5H", uid="d3"),
        event("DTSTART:20260310T090000Z", "DURATION:-PT1H", uid="d4"),
        event("DTSTART:20260310T090000Z", "DURATION:P1W", uid="d5"),
        event("DTSTART:20260310T090000Z", "DURATION:PT0S", uid="d6"),
        event("DTSTART:20260310T090000Z", "DTEND:20260310T100000Z", "DURATION:PT1H", uid="d7"),
    ),
    "all-day without dtend": calendar(
        event("DTSTART;VALUE=DATE:20260310", uid="a1"),
        event("DTSTART:20260311", uid="a2"),
        event("DTSTART;VALUE=DATE:20260310", "DTEND:20260312T000000Z", uid="a3"),
        event("DTSTART:20260310T090000", uid="a4"),
    ),
    "tzid forms": calendar(
        event(
            'DTSTART;TZID="Europe/Berlin":20260329T023000',
            'DTEND;TZID="Europe/Berlin":20260329T033000',
            uid="t1",
        ),
        event("DTSTART;TZID=America/New_York:20261101T013000", "DTEND;TZID=UTC:20261101T073000", uid="t2"),
        event("DTSTART;TZID=Europe/Berlin:20260310T090000Z", uid="t3"),
        event("DTSTART;TZID=/mozilla.org/20050126_1/Europe/Berlin:20260310T090000", uid="t4"),
        event("DTSTART;TZID=Nowhere/Land:20260310T090000", uid="t5"),
        event("DTSTART;TZID=W. Europe Standard Time:20260310T090000", uid="t6"),
        event("DTSTART;TZID=Europe/Berlin;VALUE=DATE:20260310", uid="t7"),
        event("DTSTART;TZID=EST5EDT:20260310T090000", uid="t8"),
        header=BERLIN_ZONE,
    ),
    "statuses": calendar(
        event(WHEN, "STATUS:CANCELLED", uid="s1"),
        event(WHEN, "STATUS:tentative", uid="s2"),
        event(WHEN, "STATUS:bogus", uid="s3"),
    ),
    "missing and odd uids": calendar(
        event(WHEN, "SUMMARY:no uid", uid=None),
        event(WHEN, "SUMMARY:folded uid", uid="long-\r\n uid@x"),
        event(WHEN, "SUMMARY:copy one", uid="dup@x"),
        event(WHEN, "SUMMARY:copy two", uid="dup@x"),
    ),
    "broken times and duplicates": calendar(
        event("SUMMARY:no start", uid="b1"),
        event("DTSTART:20260230T090000Z", uid="b2"),
        event("DTSTART:20260310T100000Z", "DTEND:20260310T090000Z", uid="b3"),
        event(WHEN, "SUMMARY:one", "SUMMARY:two", uid="b4"),
        event(WHEN, "DTSTART:20260311T090000Z", uid="b5"),
        event("DTSTART: 20260310T090000Z", uid="b6"),
        event("DTSTART;VALUE=PERIOD:20260310T090000Z/PT1H", uid="b7"),
        event(WHEN, "SUMMARY;VALUE=BINARY:eA==", uid="b8"),
        event("DTSTART:20260310T090000Z", "DTEND :20260310T110000Z", uid="b9"),
        event("DTSTART:20260310T090000Z", "DTEND\t;X=1:20260310T110000Z", uid="b10"),
    ),
    "parameters icalendar treats specially": calendar(
        event(WHEN, "ATTENDEE;CN=^'Q^' ^^x:mailto:q@acme.example", uid="p1"),
        event(WHEN, "ATTENDEE;CN=a%2Cb:mailto:r@acme.example", uid="p2"),
        event(WHEN, "ATTENDEE ; CN = Sam :mailto:sam@acme.example", uid="p3"),
        event(WHEN, 'ATTENDEE;CN="x","y":mailto:t@acme.example', uid="p4"),
        event(WHEN, "ATTENDEE;cn=lower;partstat=declined:mailto:u@acme.example", uid="p5"),
        event(WHEN, "ATTENDEE;CN=One;CN=Two:mailto:v@acme.example", uid="p6"),
        event(WHEN, r"ATTENDEE;CN=back\slash:mailto:w@acme.example", uid="p7"),
        event(WHEN, r"ORGANIZER:mailto:x@acme.example\nBcc: y@evil.example", uid="p8"),
    ),
    "nested and odd lines": calendar(
        event(WHEN, "BEGIN:X-THING", "X-A:1", "END:X-THING", uid="n1"),
        event(WHEN, "BEGIN:VALARM", "TRIGGER:-PT15M", "END:VALARM", uid="n2"),
        event(WHEN, "EXDATE:20260310T090000Z", uid="n3"),
        event(WHEN, "X-WEIRD;:x", "summary:lower-case name", uid="n4"),
        event(WHEN, "DESCRIPTION:" + "long " * 5000, uid="n5"),
        event(WHEN, "SUMMARY:=?utf-8?q?Subject=0D=0ABcc:_x@y?=", uid="n6"),
    ),
    "tags": calendar(
        event(WHEN, "SUMMARY:Acme #closing", uid="g1"),
        event(WHEN, "SUMMARY:Acme #clos\r\n ing", uid="g2"),
        event(WHEN, r"DESCRIPTION:#deal\:acme", uid="g3"),
    ),
    "x-wr-timezone in the calendar": calendar(
        event("DTSTART:20260310T090000", uid="w1"), header="X-WR-TIMEZONE:Asia/Tokyo\r\n"
    ),
}


@pytest.mark.parametrize("case", ODD)
def test_given_odd_events_then_the_light_reader_gives_what_icalendar_gives(tmp_path: Path, case: str) -> None:
    # Given events written the ways real exporters (and attackers) write them
    path = tmp_path / "odd.ics"
    path.write_bytes(ODD[case].encode("latin-1" if "\xc3" in ODD[case] else "utf-8"))
    # When synced with and without the light reader, then both readings agree in every field
    light, full = sync_both(path, default_zone="America/New_York")
    assert_same(light, full)
    assert isinstance(full, SyncBatch) and (full.upserted or full.problems)
