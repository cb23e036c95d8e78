"""Telling people what the trading loop does, through Airflow's own notifiers.

The approval request, the decision, every placement and every fill can be sent through any
Airflow notifier (``BaseNotifier``: Airflow's ``SmtpNotifier``, ``SlackNotifier``, ...); this
provider ships no transport of its own. Each operator that has news takes ``notifiers=[...]`` and
calls them with the task's context plus ``ibkr_event``::

    {"kind": "approval_requested" | "decided" | "order_placed" | "order_ended",
     "subject": "Approve 3 IBKR order(s) on DU1234567 (paper)",
     "text": "... plain text / Markdown ...",
     "html": "<pre>... the same text, escaped ...</pre>"}

so a notifier's templates say ``{{ ibkr_event.subject }}`` and ``{{ ibkr_event.html }}``.

Delivery: Airflow's approval operator sends the approval request itself and fails the task when a
notifier fails (nobody would know a decision is waiting). The other notices are news about what
already happened (an order IBKR accepted stands): a notifier that fails is logged as a warning and
the task goes on. Each notifier is copied before it is called (Airflow renders a notifier's
templates in place, once).
"""

from __future__ import annotations

import copy
import html
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import BaseNotifier, Context

#: The context key notifier templates read.
EVENT_KEY = "ibkr_event"


@dataclass(frozen=True)
class IbkrEvent:
    """One piece of news: what happened (``kind``), a one-line ``subject`` and the ``text``."""

    kind: str
    subject: str
    text: str

    def as_context(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "text": self.text,
            "html": f"<pre style='font-family: monospace'>{html.escape(self.text)}</pre>",
        }


def with_event(context: Context, event: IbkrEvent) -> Context:
    """``context`` with ``ibkr_event`` set (the same mapping, so Airflow's own calls see it)."""
    context[EVENT_KEY] = event.as_context()  # type: ignore[literal-required]
    return context


def notify(
    notifiers: Iterable[BaseNotifier], context: Context, event: IbkrEvent, log: logging.Logger | Any
) -> int:
    """Send ``event`` through each notifier; a failing one is a warning, not a failed task.
    Returns how many were sent."""
    sent = 0
    with_event(context, event)
    for notifier in notifiers:
        try:
            copy.deepcopy(notifier)(context)
        except Exception as exc:  # any transport's failure: the event itself stands
            log.warning(
                "Notification of %s (%s) through %s failed: %s",
                event.kind,
                event.subject,
                type(notifier).__name__,
                exc,
            )
        else:
            sent += 1
    return sent


def email_notifiers_from_env() -> list[BaseNotifier]:
    """The example DAGs' notifiers: with ``IBKR_NOTIFY_EMAIL`` set (comma-separated addresses),
    one Airflow ``SmtpNotifier`` through the SMTP connection ``IBKR_NOTIFY_SMTP_CONN_ID``
    (default ``smtp_default``); none otherwise. Read when the DAG file is parsed."""
    to = [a.strip() for a in os.environ.get("IBKR_NOTIFY_EMAIL", "").split(",") if a.strip()]
    if not to:
        return []
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    return [
        SmtpNotifier(
            to=to,
            smtp_conn_id=os.environ.get("IBKR_NOTIFY_SMTP_CONN_ID") or "smtp_default",
            subject="[IBKR] {{ ibkr_event.subject }}",
            html_content="{{ ibkr_event.html }}",
        )
    ]


def notifier_list(notifiers: BaseNotifier | Sequence[BaseNotifier] | None) -> list[BaseNotifier]:
    """One notifier, several or none, as a list (as Airflow's own operators accept them)."""
    if notifiers is None:
        return []
    if isinstance(notifiers, Sequence):
        return list(notifiers)
    return [notifiers]


def describe(**facts: Any) -> str:
    """``key: value`` lines, the ones without a value left out."""
    lines = (f"{key.replace('_', ' ')}: {value}" for key, value in facts.items() if value not in (None, ""))
    return "\n".join(lines)
