"""Paper or live, decided from what IBKR says about the account, never from how its id is spelt.

Two of IBKR's answers speak to it: ``GET /portfolio/accounts`` gives each account a ``type``
(``"DEMO"`` for a paper account: the Web API's AccountAttributes and ibind's fixture), and
``GET /iserver/accounts`` says ``isPaper`` for the whole login (IBKR's paper and live logins are
separate users). An account is paper only when IBKR says so and nothing it says contradicts it;
when IBKR says nothing, or one answer says live, the account is live. A live account needs
``allow_live`` before an order is placed, so an unclear answer only makes the provider more
careful. (An id's ``D`` prefix is a convention, not a rule the provider may trust: a crafted id
such as ``DU1234567/../U3456789`` once passed as paper and reached the live account.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: ``type`` values of ``/portfolio/accounts`` entries that mean a paper account. Another value,
#: or a paper account IBKR labels differently, counts as live (fails closed).
PAPER_ACCOUNT_TYPES = frozenset({"DEMO"})


def account_is_paper(account_id: str, *, login_is_paper: Any, accounts: Iterable[Mapping[str, Any]]) -> bool:
    """Whether IBKR says ``account_id`` is a paper account (see the module docstring).

    :param login_is_paper: ``isPaper`` of ``/iserver/accounts`` (only a real ``True`` or
        ``False`` counts).
    :param accounts: the entries of ``/portfolio/accounts``.
    """
    votes: list[bool] = []
    if isinstance(login_is_paper, bool):
        votes.append(login_is_paper)
    for entry in accounts:
        if str(entry.get("accountId") or entry.get("id") or "") != account_id:
            continue
        kind = entry.get("type")
        if kind:
            votes.append(str(kind).upper() in PAPER_ACCOUNT_TYPES)
    return bool(votes) and all(votes)
