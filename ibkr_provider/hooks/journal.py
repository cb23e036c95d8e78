"""``IbkrJournalHook``: the trade journal in the database an Airflow connection names.

Any connection works: type ``sqlite`` (host: the file's path), ``postgres`` (host, port, login,
password, schema: the database), or any type with the extra ``sqlalchemy_url`` (a full
SQLAlchemy URL; its password is masked). The table is created when missing
(:mod:`ibkr_provider.journal.store`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, BaseHook
from airflow.sdk.log import mask_secret

from ibkr_provider.client.errors import IbkrConfigError
from ibkr_provider.hooks.connection import extra_of

if TYPE_CHECKING:
    from airflow.sdk import Context
    from sqlalchemy.engine import URL

    from ibkr_provider.journal.store import TradeJournal

#: The journal connection the example DAGs use (``make demo`` and ``make up`` create it).
DEFAULT_JOURNAL_CONN_ID = "ibkr_journal"

#: Gets an event per run of a DAG that journals (declare it in the last task's ``outlets`` and
#: call :func:`announce_journal_rows`), so a downstream DAG (tax lots, a dashboard) can be
#: scheduled on it.
TRADE_JOURNAL_ASSET = Asset(name="ibkr_trade_journal", uri="ibkr://journal/trades")


def journal_url(conn: Any) -> URL:
    """The SQLAlchemy URL of the journal connection ``conn``, or an error naming the field."""
    from sqlalchemy.engine import URL, make_url
    from sqlalchemy.exc import ArgumentError

    extra = extra_of(conn)
    if extra.get("sqlalchemy_url"):
        try:
            url = make_url(str(extra["sqlalchemy_url"]))
        except ArgumentError:
            raise IbkrConfigError(
                "sqlalchemy_url", "is not a SQLAlchemy URL such as postgresql://user@host/db"
            ) from None
        if url.password:
            mask_secret(str(url.password))
        return url
    kind = (conn.conn_type or "").lower()
    if kind == "sqlite":
        if not conn.host:
            raise IbkrConfigError("host", "the journal's SQLite file, e.g. /var/lib/airflow/ibkr_journal.db")
        return URL.create("sqlite", database=conn.host)
    if kind in ("postgres", "postgresql"):
        if conn.password:
            mask_secret(conn.password)
        return URL.create(
            "postgresql+psycopg2",
            username=conn.login or None,
            password=conn.password or None,
            host=conn.host or None,
            port=conn.port or None,
            database=conn.schema or None,
        )
    raise IbkrConfigError(
        "conn_type",
        f"a {kind or 'typeless'} connection cannot hold the trade journal: use a sqlite or postgres "
        "connection, or set the extra sqlalchemy_url",
    )


class IbkrJournalHook(BaseHook):
    """The trade journal of one connection.

    Example::

        with IbkrJournalHook("ibkr_journal") as journal:
            rows = journal.rows(run_id=run_id)
    """

    conn_name_attr = "journal_conn_id"
    default_conn_name = DEFAULT_JOURNAL_CONN_ID
    hook_name = "IBKR trade journal"

    def __init__(self, journal_conn_id: str = DEFAULT_JOURNAL_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.journal_conn_id = journal_conn_id
        self._journal: TradeJournal | None = None

    def get_conn(self) -> TradeJournal:
        if self._journal is None:
            import sqlalchemy as sa

            from ibkr_provider.journal.store import TradeJournal

            url = journal_url(self.get_connection(self.journal_conn_id))
            self._journal = TradeJournal(sa.create_engine(url))
        return self._journal

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def __enter__(self) -> TradeJournal:
        return self.get_conn()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def announce_journal_rows(context: Context, journal_conn_id: str | None) -> dict[str, Any]:
    """Attach to this task's :data:`TRADE_JOURNAL_ASSET` event what the run wrote to the journal:
    ``{"journal_conn_id", "dag_id", "run_id", "rows", "by_kind"}`` (rows 0 when no journal)."""
    ti = context["ti"]
    by_kind: dict[str, int] = {}
    if journal_conn_id:
        with IbkrJournalHook(journal_conn_id) as journal:
            by_kind = journal.counts(dag_id=ti.dag_id, run_id=ti.run_id)
    extra: dict[str, Any] = {
        "journal_conn_id": journal_conn_id or None,
        "dag_id": ti.dag_id,
        "run_id": ti.run_id,
        "rows": sum(by_kind.values()),
        "by_kind": by_kind,
    }
    context["outlet_events"][TRADE_JOURNAL_ASSET].extra = extra
    return extra
