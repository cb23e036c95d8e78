"""Default connection ids, importable without importing a hook (operators use them as
argument defaults, and DAG files import operators on every parse)."""

from contextvars import ContextVar

DEFAULT_CONN_ID = "ibkr_default"
DEFAULT_FLEX_CONN_ID = "ibkr_flex_default"

#: The connection the UI's Test button is testing. Airflow's test endpoint hands the hook a
#: random transient connection id; the plugin's middleware, which sees the request, sets this, so
#: a session a Test opens names its real connection (errors about who holds an IBKR user's
#: brokerage session show it).
TESTED_CONN_ID: ContextVar[str | None] = ContextVar("ibkr_tested_conn_id", default=None)
