"""The ledger's interface: what the engine, dispatcher, scheduler and CLI may ask of the durable state.

Every method is one transaction. The SQLAlchemy store implements it (`store.py`); callers depend on this.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from daemon.ledger.moves import Move
from daemon.ledger.reconcile import EventPlan
from daemon.model import CalendarEvent, Outcome, PlannedSend, SendRecord, Status
from daemon.playbook import OutcomeRecord


@dataclass(frozen=True)
class Transition:
    """One move of a send, as `history` shows it."""

    key: str
    from_status: str | None
    to_status: str
    at: datetime
    reason: str | None


@dataclass(frozen=True)
class OutcomeEntry:
    """One outcome recorded for an event: what, from where (and which link), when."""

    outcome: Outcome
    source: str
    detail: str | None
    at: datetime


@dataclass(frozen=True)
class StoredEvent:
    event: CalendarEvent
    first_seen: datetime
    deleted: bool
    sources: tuple[str, ...]
    digest: str  # of the event as stored: a sync that changes it changes this


@dataclass(frozen=True)
class CalendarChanges:
    """One calendar's sync as the ledger stores it: its changes and new cursor, and how the playbook
    files each changed event, so that it can be looked up that way."""

    source: str
    upserted: Sequence[CalendarEvent] = ()
    removed: Sequence[str] = ()  # event ids
    state: dict[str, Any] = field(default_factory=dict)  # the calendar's cursor
    filings: Mapping[str, Filing] = field(default_factory=dict)  # by event id; none: no deal, no domain


@dataclass(frozen=True)
class Filing:
    """How the playbook files an event: its deal, its customer domains, and whether it is a kickoff or
    closing call."""

    deal: str | None = None
    domains: frozenset[str] = frozenset()
    call: bool = False


@dataclass(frozen=True)
class PlansWritten:
    """What `write_plans` did: each event's counts of sends planned, updated and cancelled, and the
    outcomes its tags changed (None: a tag's outcome that is gone)."""

    counts: Mapping[str, Mapping[str, int]]
    outcomes: Mapping[str, Outcome | None]


@dataclass(frozen=True)
class ClaimTerms:
    """How a dispatcher claims due sends: for how long, how many at once, as which instance, and
    whose claims it may take at once (instances known to be dead)."""

    lease: timedelta
    limit: int = 100
    owner: str | None = None
    from_dead: tuple[str, ...] = ()


@dataclass(frozen=True)
class Known:
    """What rendering a batch of claimed sends needs from the ledger, read at once: their events, their
    deals' live events (earliest first), the events' outcomes, and the suppressed addresses and domains
    among their recipients."""

    events: Mapping[str, CalendarEvent] = field(default_factory=dict)  # by event id, deleted ones too
    deal_events: Mapping[str, Sequence[CalendarEvent]] = field(default_factory=dict)  # by deal
    outcomes: Mapping[str, OutcomeRecord] = field(default_factory=dict)  # by event id
    listed: frozenset[str] = frozenset()  # on the suppression list: addresses and domains

    def blocked(self, addresses: Iterable[str]) -> set[str]:
        """Which of these addresses, or their domains, asked not to be written to."""
        return suppressed_among(addresses, self.listed)


def suppressed_among(addresses: Iterable[str], listed: Collection[str]) -> set[str]:
    """The addresses that are on the suppression list `listed`, themselves or by their domain."""
    return {a for a in addresses if a in listed or a.rsplit("@", 1)[-1] in listed}


@dataclass(frozen=True)
class Record:
    """An attempt's move to record: the send's key, its claim's attempt id, the move and its time."""

    key: str
    attempt_id: str
    move: Move
    at: datetime


@dataclass(frozen=True)
class Handing:
    """An attempt about to hand its message to the transport, and the lease it keeps meanwhile."""

    key: str
    attempt_id: str
    at: datetime
    lease: timedelta
    recipients: tuple[str, ...] = ()  # looked up on the suppression list in the same transaction


class Ledger(ABC):
    """The single source of truth for events, outcomes, cursors and every send's life."""

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @abstractmethod
    def close(self) -> None: ...

    # -- meta, cursors and sync leases ---------------------------------------------------------
    @abstractmethod
    def get_meta(self, key: str) -> str | None: ...

    @abstractmethod
    def set_meta(self, key: str, value: str) -> None: ...

    @abstractmethod
    def cursor(self, source: str) -> dict[str, Any] | None:
        """Where the last sync of a calendar left off."""

    @abstractmethod
    def sync_lease_owner(self, source: str) -> str | None: ...

    @abstractmethod
    def sync_leases(self, now: datetime) -> dict[str, str]:
        """The calendars being synced right now, and by which instance."""

    @abstractmethod
    def take_sync_lease(
        self, source: str, owner: str, now: datetime, ttl: timedelta, *, from_dead: str | None = None
    ) -> bool:
        """Only one instance syncs a calendar at a time; a dead instance's lease runs out, or is
        taken at once from `from_dead`, an owner known to be dead."""

    @abstractmethod
    def release_sync_lease(self, source: str, owner: str) -> None: ...

    # -- events and outcomes -------------------------------------------------------------------
    @abstractmethod
    def apply_sync(self, changes: CalendarChanges, at: datetime) -> tuple[list[str], list[str], list[str]]:
        """Store one calendar's changes and its new cursor together, each event marked unsettled.

        Returns the ids of events that are new, changed, and gone from every calendar.
        """

    @abstractmethod
    def with_sends_or_outcome(self, event_ids: list[str]) -> set[str]:
        """Which of these events have sends or an outcome: the ones whose changes matter."""

    @abstractmethod
    def mark_settled(self, event_ids: list[str]) -> None: ...

    @abstractmethod
    def unsettled_events(self, skip_sources: Iterable[str] = ()) -> list[str]:
        """Events stored but not yet planned, except those of calendars in `skip_sources`."""

    @abstractmethod
    def event(self, event_id: str) -> StoredEvent | None: ...

    @abstractmethod
    def events_by_id(self, event_ids: Iterable[str]) -> dict[str, StoredEvent]:
        """These events as stored, deleted ones too; an id not in the ledger is left out."""

    @abstractmethod
    def first_seen(self, event_ids: Iterable[str]) -> dict[str, datetime]:
        """When each of these events was first stored."""

    @abstractmethod
    def find_event(self, text: str) -> StoredEvent:
        """An event by its id, or by a unique prefix of it; UserError otherwise."""

    @abstractmethod
    def events_of_deal(self, deal: str) -> list[CalendarEvent]:
        """The deal's live events, earliest first."""

    @abstractmethod
    def deal_calls(self, deals: Iterable[str]) -> dict[str, list[str]]:
        """The ids of each deal's live kickoff and closing calls, and of its events not yet known to be
        calls or not (stored by a version that did not tell), earliest first as `events_of_deal` orders
        them."""

    @abstractmethod
    def refile(self, filings: Mapping[str, tuple[Filing, str]]) -> int:
        """File these events again as edited rules see them (their deal, domains, being a call), each
        as of the stored event with that digest: one a sync changed since keeps the sync's filing.
        Writes only what differs; returns how many events it wrote."""

    @abstractmethod
    def unfiled_events(self) -> list[str]:
        """Events stored without being told whether they are calls: by a version before that (schema
        6), or by one still running beside this one."""

    @abstractmethod
    def all_event_ids(self) -> list[str]: ...

    @abstractmethod
    def outcome(self, event_id: str) -> OutcomeRecord | None: ...

    @abstractmethod
    def outcomes(self, event_ids: Iterable[str]) -> dict[str, OutcomeRecord]:
        """The outcomes known of these events; one without is left out."""

    @abstractmethod
    def record_outcome(
        self, event_id: str, outcome: Outcome, source: str, at: datetime, detail: str | None = None
    ) -> bool:
        """Store an outcome from `source` ("tag", "cli", "link"; `detail`: which link); True if it is new
        or different from the one already known, and then it is also added to the event's outcome log."""

    @abstractmethod
    def outcome_log(self, event_id: str) -> list[OutcomeEntry]:
        """Every outcome recorded for the event, oldest first."""

    @abstractmethod
    def clear_outcome(self, event_id: str, source: str) -> bool:
        """Forget an outcome from `source` (a tag that is gone); one from the command line stays."""

    # -- planning ------------------------------------------------------------------------------
    @abstractmethod
    def reconcile(self, plan: EventPlan, at: datetime) -> dict[str, int]:
        """Bring an event's sends in line with its new plan (`reconcile.reconcile` decides how) and
        mark it settled. Counts of sends "planned", "updated" and "cancelled"."""

    @abstractmethod
    def write_plans(
        self, plans: Sequence[EventPlan], at: datetime, tagged: Mapping[str, Outcome | None] | None = None
    ) -> PlansWritten:
        """`reconcile` many events at once, and first note the outcomes their tags say (`tagged`: by event,
        as `record_outcome` from "tag" would, or `clear_outcome` of a tag's when None): all or nothing."""

    @abstractmethod
    def pending_sequences(
        self, domains: Iterable[str], *, lost_before: datetime | None = None
    ) -> dict[str, list[SendRecord]]:
        """By customer domain: the pending sends that stop when that customer re-engages; with
        `lost_before`, only those of events whose outcome was recorded before then."""

    @abstractmethod
    def stop_sequence(self, key: str, reason: str, at: datetime) -> bool:
        """Stop a pending send; one that already went to some of its recipients is recorded sent."""

    # -- the send state machine ----------------------------------------------------------------
    @abstractmethod
    def claim_due(self, now: datetime, terms: ClaimTerms) -> list[SendRecord]:
        """Atomically take the sends due now; each gets a fresh attempt id, a lease and its owner.
        Claims not handed over are taken again once their lease ran out, or their owner is dead."""

    @abstractmethod
    def claim_owners(self) -> set[str]:
        """The instances holding claims now."""

    @abstractmethod
    def mark_handed(self, key: str, attempt_id: str, at: datetime, lease: timedelta) -> bool:
        """Commit, before the transport sees the message, that this attempt hands it over; False if
        the claim is no longer ours."""

    @abstractmethod
    def record(self, key: str, attempt_id: str, move: Move, at: datetime) -> bool:
        """End this attempt's claim with `move`; False if the claim is no longer ours."""

    @abstractmethod
    def record_and_hand(
        self, records: Sequence[Record], handing: Handing | None = None
    ) -> tuple[list[bool], bool, set[str]]:
        """In one transaction: each of `records` as `record` makes it, then the hand-over of `handing` as
        `mark_handed` commits it, unless one of its recipients is suppressed by now. Whether each record
        was made, whether the hand-over was (False without one), and the suppressed recipients that
        stopped it: a dispatcher records one message's result with the next one's hand-over."""

    @abstractmethod
    def known(self, sends: Sequence[SendRecord]) -> Known:
        """What rendering these sends needs (see `Known`), in one read."""

    @abstractmethod
    def release_claims(
        self, at: datetime, reason: str, *, owner: str | None = None, attempt_ids: Iterable[str] = ()
    ) -> list[str]:
        """Put claims not handed over back to planned, due as before, uncounted: those of `owner`, or
        with these attempt ids. Returns the keys released."""

    @abstractmethod
    def orphans(self, now: datetime, from_dead: Iterable[str] = ()) -> list[SendRecord]:
        """Sends handed over by a process that stopped before recording the result: its lease ran
        out, or its owner is in `from_dead`."""

    @abstractmethod
    def hold_due(self, now: datetime, until: datetime, reason: str) -> int:
        """Hold every pending send due now until `until`, unclaimed: sending stopped for this pass."""

    @abstractmethod
    def release_held(self) -> int:
        """Make sends held for a person's fix due again: at start-up, the settings may be fixed."""

    @abstractmethod
    def confirm_sent(self, key: str, at: datetime, reason: str) -> bool:
        """A person says an unknown send did arrive: sent, when it was handed over."""

    @abstractmethod
    def resend(self, key: str, at: datetime, reason: str) -> bool:
        """A person asks for a failed or unknown send to go out again: due at once, with a window for
        retries counted from now and no deadline of its own."""

    # -- test sends ----------------------------------------------------------------------------
    @abstractmethod
    def record_test(self, send: PlannedSend, subject: str, move: Move, at: datetime) -> None:
        """Record a test send (`preview --send-to`) once it was tried at `at`: `moves.Sent`, `Failed` or
        `Unknown`, under its own key. A test is never claimed, moved, re-planned, counted toward a
        sender's limits, or listed by `sends`; `send(key)` and `tests()` read it."""

    @abstractmethod
    def tests(self) -> list[SendRecord]:
        """The test sends, earliest first."""

    # -- reading sends -------------------------------------------------------------------------
    @abstractmethod
    def send(self, key: str) -> SendRecord | None:
        """A send by its key, a test send too."""

    @abstractmethod
    def sends(
        self, statuses: Iterable[Status] | None = None, event_id: str | None = None
    ) -> list[SendRecord]:
        """The playbook's sends (never a test), earliest due first."""

    @abstractmethod
    def counts(self) -> dict[Status, int]:
        """How many of the playbook's sends are in each state (never a test; a state none is in is left
        out): one cheap query, for the metrics and the health check."""

    @abstractmethod
    def transitions(self, key: str | None = None) -> list[Transition]: ...

    @abstractmethod
    def next_due(self) -> datetime | None:
        """When the dispatcher has something to do next: a send due, or a lease running out."""

    @abstractmethod
    def sent_count(self, sender: str, since: datetime, service_sender: str) -> int:
        """How many messages went out from `sender` since a moment: for per-sender daily limits
        (test sends do not count)."""

    # -- suppression list ----------------------------------------------------------------------
    @abstractmethod
    def suppress(self, address: str, at: datetime, reason: str | None = None) -> bool: ...

    @abstractmethod
    def unsuppress(self, address: str) -> bool: ...

    @abstractmethod
    def suppressed(self) -> list[tuple[str, datetime, str | None]]: ...

    @abstractmethod
    def is_suppressed(self, addresses: Iterable[str]) -> set[str]:
        """Which of these addresses, or their domains, asked not to be written to."""
