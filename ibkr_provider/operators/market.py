"""``IbkrMarketSnapshotOperator``: prices for symbols, as numbers, ready for downstream tasks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

from ibkr_provider.client.api.marketdata import DEFAULT_FIELDS
from ibkr_provider.client.errors import IbkrValidationError
from ibkr_provider.failures import fail_fast
from ibkr_provider.hooks.ibkr import IbkrHook


class IbkrMarketSnapshotOperator(BaseOperator):
    """Resolve symbols to conids (``/iserver/secdef/search``), do IBKR's pre-flight, and re-poll
    the snapshot within a bound until every requested field is present; values are converted
    from IBKR's strings to numbers. An incomplete snapshot fails the task.

    Example::

        IbkrMarketSnapshotOperator(task_id="prices", symbols=["VTI", "BND"], fields=["31", "84", "86"])

    :param symbols: ticker symbols (templated).
    :param fields: IBKR field codes (31 last, 84 bid, 86 ask, ...).
    :return: ``{symbol: {"conid": int, "<field>": float, ...}}``.
    """

    template_fields: Sequence[str] = ("ibkr_conn_id", "symbols")
    ui_color = "#d7f2e3"

    def __init__(
        self,
        *,
        symbols: Sequence[str] | str,
        fields: Sequence[str] = DEFAULT_FIELDS,
        sec_type: str = "STK",
        max_polls: int = 6,
        ibkr_conn_id: str = IbkrHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.symbols = symbols
        self.fields = tuple(fields)
        self.sec_type = sec_type
        self.max_polls = max_polls
        self.ibkr_conn_id = ibkr_conn_id

    def execute(self, context: Context) -> dict[str, dict[str, Any]]:
        with fail_fast(f"IBKR market snapshot ({self.task_id})"):
            symbols = [self.symbols] if isinstance(self.symbols, str) else list(self.symbols)
            symbols = [s.strip().upper() for symbol in symbols for s in str(symbol).split(",") if s.strip()]
            if not symbols:
                raise IbkrValidationError("symbols", "give at least one ticker symbol, e.g. ['VTI']")
            with IbkrHook(ibkr_conn_id=self.ibkr_conn_id) as hook:
                market = hook.get_conn().market_data
                conids = market.resolve_conids(symbols, sec_type=self.sec_type)
                quotes = market.snapshot(list(conids.values()), self.fields, max_polls=self.max_polls)
        result = {symbol: {"conid": conid, **quotes[conid].as_json()} for symbol, conid in conids.items()}
        self.log.info("Snapshot: %s", result)
        return result
