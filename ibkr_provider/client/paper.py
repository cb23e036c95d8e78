"""Paper or live: the one rule the models and the order operator share."""


def is_paper_account(account_id: str) -> bool:
    """IBKR paper accounts have ids starting with ``D`` (``DU...``, ``DF...``); others are live."""
    return account_id.upper().startswith("D")
