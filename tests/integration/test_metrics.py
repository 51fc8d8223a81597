"""/metrics over HTTP after the daemon's first pass: every value is what the pass did, as the ledger says.

In process: the daemon (its scheduler, on the real clock) beside the probes' own uvicorn server, sending
through a real aiosmtpd server that refuses one customer's mailbox. The text is parsed with
prometheus_client's own parser.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from daemon.engine import Engine
from daemon.health import Health
from daemon.metrics import FINAL, Metrics
from daemon.model import Status
from daemon.scheduler import Daemon
from daemon.web.probes import Probes
from daemon.web.server import ProbeServer
from tests.support.cli import wait_for
from tests.support.engine import Calls, start_engine
from tests.support.probes import readyz, scrape
from tests.support.smtp import RecordingHandler, SmtpServer, serving

GONE = "gone@lost-b.example"  # the customer whose mailbox the server refuses for good


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with serving(RecordingHandler(refuse={GONE})) as server:
        yield server


def test_metrics_match_what_the_first_pass_did(
    tmp_path: Path, smtp: SmtpServer, engines: list[Engine]
) -> None:
    # Given two closing calls whose prep to the rep is due, and two lost deals whose thank-you to the
    # customer is due, one of them to a mailbox the server refuses
    before = datetime.now(UTC)
    now = before.replace(microsecond=0)
    calls = Calls()
    calls.closing("deal-a", now, [("buyer@deal-a.example", "Buyer A")])
    calls.closing("deal-b", now, [("buyer@deal-b.example", "Buyer B")])
    calls.lost("lost-a", now, [("buyer@lost-a.example", "Lost Buyer A")])
    calls.lost("lost-b", now, [(GONE, "Lost Buyer B")])
    extra = '[metrics]\nlisten = "127.0.0.1:0"'
    engine = start_engine(tmp_path, smtp.port, calls, engines=engines, extra=extra)
    calendars = [s.name for s in engine.sources]
    metrics = Metrics([r.name for r in engine.policy.rules], calendars)
    health = Health(calendars, engine.settings.schedule.poll_interval)
    daemon = Daemon(engine, observers=[metrics, health])
    server = ProbeServer(engine.settings, Probes(metrics, health)).start()
    try:
        # When the daemon makes its first pass, and Prometheus scrapes once it is ready
        daemon.start()
        wait_for(lambda: readyz(server.url)[0] == 200, "the daemon ready after its first pass", seconds=60)
        got = scrape(server.url)
    finally:
        daemon.stop()
        server.stop()
    after = datetime.now(UTC)
    sends = engine.ledger.sends()

    # Then the sends by rule and final status are the ledger's, one by one
    ended = Counter((s.rule, s.status.value) for s in sends if s.status in FINAL)
    assert got.by("followthrough_sends_total", "rule", "status") == dict(ended)
    assert ended == {
        ("closing-prep", "sent"): 2,
        ("lost-thank-you", "sent"): 1,
        ("lost-thank-you", "failed"): 1,
    }
    # And every rule has its series from the start, at 0 until something ends
    assert got.value("followthrough_sends_total", rule="handoff-brief", status="sent") == 0
    # And the lateness histogram holds each sent one, from due to sent
    sent = [s for s in sends if s.status is Status.SENT]
    assert sent and all(s.sent_at is not None for s in sent)
    lateness = [(s.sent_at - s.due).total_seconds() for s in sent if s.sent_at is not None]
    assert got.value("followthrough_send_lateness_seconds_count") == len(sent)
    assert got.value("followthrough_send_lateness_seconds_sum") == pytest.approx(sum(lateness), abs=1e-3)
    assert got.value("followthrough_send_lateness_seconds_bucket", le="+Inf") == len(sent)
    within_an_hour_and_a_half = sum(1 for x in lateness if x <= 7200)
    assert got.value("followthrough_send_lateness_seconds_bucket", le="7200.0") == within_an_hour_and_a_half
    # And the pending and unknown counts are the ledger's now
    pending = sum(1 for s in sends if s.status in (Status.PLANNED, Status.CLAIMED))
    assert pending > 0
    assert got.value("followthrough_sends_pending") == pending
    assert got.value("followthrough_sends_unknown") == 0
    assert got.value("followthrough_ledger_up") == 1
    # And the calendar synced once, without failing, during the pass
    assert got.value("followthrough_calendar_sync_duration_seconds_count", calendar="sales") == 1
    assert got.value("followthrough_calendar_sync_failures_total", calendar="sales") == 0
    synced = got.value("followthrough_calendar_last_sync_timestamp_seconds", calendar="sales")
    assert synced is not None and before.timestamp() - 1 <= synced <= after.timestamp()
    # And the one refusal is counted as the transport's permanent error, the other kinds at 0
    assert got.by("followthrough_transport_errors_total", "kind") == {("permanent",): 1}
    assert got.value("followthrough_transport_errors_total", kind="transient") == 0
    assert got.value("followthrough_pass_failures_total") == 0
