"""A real SMTP server for tests (aiosmtpd on a free 127.0.0.1 port): it holds every message it
receives, parsed, so a test reads what a person's mailbox would."""

from __future__ import annotations

import email
import email.policy
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from scripts.local_airflow import free_port


@dataclass
class Mailbox:
    """What the server received; ``connection_json`` is an Airflow SMTP connection to it."""

    port: int
    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd's hook
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(parsed)  # type: ignore[arg-type]
        return "250 Message accepted for delivery"

    def connection_json(self) -> str:
        extra = {
            "disable_ssl": True,
            "disable_tls": True,
            "from_email": "airflow@localhost",
            "retry_limit": 0,
        }
        return json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": self.port, "extra": extra})

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.messages]

    def text_of(self, subject_part: str) -> str:
        """The body of the first message whose subject contains ``subject_part``."""
        for message in self.messages:
            if subject_part in str(message["Subject"]):
                body = message.get_body(preferencelist=("html", "plain"))
                return str(body.get_content()) if body is not None else ""
        raise AssertionError(f"no message with {subject_part!r} in its subject; got {self.subjects()}")

    def wait_for(self, subject_part: str, seconds: float = 60) -> str:
        deadline = time.monotonic() + seconds
        while True:
            try:
                return self.text_of(subject_part)
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


@contextmanager
def smtp_server() -> Iterator[Mailbox]:
    """An SMTP server on 127.0.0.1, stopped on leaving."""
    box = Mailbox(free_port())
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()
