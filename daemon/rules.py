"""The default playbook: which email goes when, to whom, from whom, around a closing or kickoff call.

Each rule can be overridden or disabled by name in the config (`[[rules]]`), and new ones added there.
"""

from __future__ import annotations

from datetime import timedelta

from daemon.model import Anchor, Audience, Condition, Kind, Rule, Sender

H = timedelta(hours=1)
D = timedelta(days=1)

DEFAULT_RULES: tuple[Rule, ...] = (
    Rule("closing-prep", Kind.CLOSING, Condition.ALWAYS, Anchor.START, -24 * H, (Audience.REP,)),
    Rule("closing-final", Kind.CLOSING, Condition.ALWAYS, Anchor.START, -1 * H, (Audience.REP,)),
    Rule("outcome-nudge", Kind.CLOSING, Condition.NO_OUTCOME, Anchor.END, 2 * H, (Audience.REP,)),
    Rule(
        "implementation-intro",
        Kind.CLOSING,
        Condition.WON,
        Anchor.OUTCOME,
        timedelta(minutes=30),  # a moment to undo a mistaken tag before the customer hears
        (Audience.CUSTOMER,),
        cc=(Audience.IMPLEMENTATION,),  # from the rep: never copied on their own email
        sender=Sender.REP,
        business_hours=True,
    ),
    Rule(
        "handoff-brief",
        Kind.CLOSING,
        Condition.WON,
        Anchor.OUTCOME,
        timedelta(0),
        (Audience.IMPLEMENTATION,),
        cc=(Audience.REP,),
    ),
    Rule(
        "kickoff-prep",
        Kind.KICKOFF,
        Condition.ALWAYS,
        Anchor.START,
        -24 * H,
        (Audience.REP, Audience.IMPLEMENTATION),
    ),
    *(
        Rule(
            name,
            Kind.CLOSING,
            Condition.LOST,
            Anchor.END,
            offset,
            (Audience.CUSTOMER,),
            sender=Sender.REP,
            business_hours=True,
            stop_on_reengagement=True,
        )
        for name, offset in (
            ("lost-thank-you", 1 * D),
            ("lost-check-in", 90 * D),
            ("lost-next-year", 335 * D),  # about eleven months: before their next budget year
        )
    ),
)
