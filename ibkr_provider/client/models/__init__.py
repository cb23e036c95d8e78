"""Typed, frozen results of IBKR's answers, one module per endpoint family: ``session`` (login
tokens, brokerage status, tickle, the accounts pre-flight), ``portfolio`` (accounts, summary,
ledger, positions, PnL), ``orders`` (tickets, what-if, live orders, status) and ``numbers``
(IBKR's number formats as Decimal), and ``paper`` (paper or live, from what IBKR says)."""
