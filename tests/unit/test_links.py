"""The links in emails: opaque, bound to their purpose, expiring, and still valid across a key rotation."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time

from daemon.links import LinkError, Links, OutcomeLink
from daemon.model import Outcome

BASE = "https://followthrough.acme.example"
T = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def links(*secrets: str, days: int = 30) -> Links:
    return Links(BASE + "/", secrets or ("s3cret-one",), timedelta(days=days))


def token(url: str) -> str:
    return url.rsplit("/", 1)[1]


def test_an_outcome_link_reads_back_as_its_event_and_outcome() -> None:
    url = links().outcome_url("globex-final@acme.example", Outcome.WON, "closing-prep")
    assert url.startswith(f"{BASE}/outcome/")
    assert links().read_outcome(token(url)) == OutcomeLink(
        "globex-final@acme.example", Outcome.WON, "closing-prep"
    )


def test_a_token_says_nothing_to_whoever_reads_the_url() -> None:
    # Given the links of a lost deal's customer mail
    unsubscribe = links().unsubscribe_url(["Dana.Fox@globex.example", "lee@globex.example"])
    outcome = links().outcome_url("globex-final@acme.example", Outcome.LOST, "closing-final")
    # Then neither the URL nor its token decoded names the address, the deal or the outcome
    for url in (unsubscribe, outcome):
        raw = base64.urlsafe_b64decode(token(url) + "==")
        for secret in (b"dana", b"globex", b"lost", b"acme"):
            assert secret not in token(url).lower().encode() and secret not in raw.lower()
    assert links().read_unsubscribe(token(unsubscribe)) == ["dana.fox@globex.example", "lee@globex.example"]


def test_a_token_of_one_purpose_never_acts_as_the_other() -> None:
    outcome = token(links().outcome_url("e1", Outcome.WON, "closing-prep"))
    unsubscribe = token(links().unsubscribe_url(["dana@globex.example"]))
    with pytest.raises(LinkError) as exc:
        links().read_unsubscribe(outcome)
    assert exc.value.status == 400
    with pytest.raises(LinkError):
        links().read_outcome(unsubscribe)


@pytest.mark.parametrize(
    "change", [lambda t: t[:-6] + "AAAAAA", lambda t: t[:40], lambda t: "x" + t, lambda t: ""]
)
def test_a_changed_or_cut_token_is_refused(change: object) -> None:
    good = token(links().outcome_url("e1", Outcome.WON, "closing-prep"))
    with pytest.raises(LinkError) as exc:
        links().read_outcome(change(good))  # type: ignore[operator]
    assert exc.value.status == 400


def test_a_token_made_with_another_secret_is_refused() -> None:
    forged = token(links("someone-elses").outcome_url("e1", Outcome.WON, "closing-prep"))
    with pytest.raises(LinkError):
        links().read_outcome(forged)


def test_after_a_key_rotation_the_old_links_still_work_and_new_ones_use_the_new_key() -> None:
    old = token(links("old-key").outcome_url("e1", Outcome.LOST, "closing-prep"))
    rotated = links("new-key", "old-key")
    assert rotated.read_outcome(old).outcome is Outcome.LOST
    new = token(rotated.outcome_url("e2", Outcome.WON, "closing-prep"))
    assert links("new-key").read_outcome(new).event_id == "e2"
    with pytest.raises(LinkError):
        links("old-key").read_outcome(new)


def test_a_link_expires_after_its_days() -> None:
    with freeze_time(T) as frozen:
        url = token(links(days=30).outcome_url("e1", Outcome.WON, "closing-prep"))
        frozen.move_to(T + timedelta(days=30) - timedelta(minutes=1))
        assert links(days=30).read_outcome(url).event_id == "e1"
        frozen.move_to(T + timedelta(days=30, minutes=1))
        with pytest.raises(LinkError) as exc:
            links(days=30).read_outcome(url)
        assert exc.value.status == 410


def test_an_unsubscribe_link_never_expires_while_its_key_is_kept() -> None:
    with freeze_time(T) as frozen:
        url = token(links(days=30).unsubscribe_url(["dana@globex.example"]))
        frozen.move_to(T + timedelta(days=400))
        assert links(days=30).read_unsubscribe(url) == ["dana@globex.example"]
        with pytest.raises(LinkError):
            links("a-newer-key-only").read_unsubscribe(url)
