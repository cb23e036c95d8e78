"""A fetched Flex report: IBKR's bytes as sent, and its sections as rows (the shape ibflex
reads: ``FlexQueryResponse`` > ``FlexStatement`` (one per account) > sections > rows)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import defusedxml.ElementTree as SafeET

from ibkr_provider.client.errors import IbkrResponseError


@dataclass(frozen=True)
class FlexReport:
    """A fetched Flex report: the raw bytes as IBKR sent them, and its sections as rows."""

    reference_code: str
    content: bytes = field(repr=False)
    sections: Mapping[str, list[dict[str, str]]] = field(repr=False)
    polls: int

    def rows(self, section: str) -> list[dict[str, str]]:
        """Rows of a section such as ``Trades``, ``OpenPositions`` or ``CashReport``."""
        return self.sections.get(section, [])

    def statements(self) -> list[dict[str, str]]:
        """Each ``FlexStatement``'s attributes: ``accountId``, ``fromDate``, ``toDate``,
        ``period``, ``whenGenerated``."""
        return [dict(statement.attrib) for statement in SafeET.fromstring(self.content).iter("FlexStatement")]


def parse_flex_statement(content: bytes) -> dict[str, list[dict[str, str]]]:
    """Section name -> rows (the attributes of each child element) of a FlexQueryResponse, each
    row tagged with its statement's ``accountId``."""
    root = SafeET.fromstring(content)
    if root.tag != "FlexQueryResponse":
        raise IbkrResponseError(f"a Flex report must be a FlexQueryResponse, got <{root.tag}>")
    sections: dict[str, list[dict[str, str]]] = {}
    for statement in root.iter("FlexStatement"):
        account = statement.get("accountId", "")
        for section in statement:
            rows = sections.setdefault(section.tag, [])
            rows.extend({"accountId": account, **child.attrib} for child in section)
    return sections


def envelope_of(content: bytes) -> tuple[str, Mapping[str, str]] | None:
    """(Status, fields) of a ``FlexStatementResponse`` envelope (SendRequest's answer, or
    GetStatement's while the report is not ready), or None for a report."""
    try:
        root = SafeET.fromstring(content)
    except SafeET.ParseError:
        return None
    if root.tag != "FlexStatementResponse":
        return None
    fields = {child.tag: (child.text or "").strip() for child in root}
    return fields.get("Status", ""), fields
