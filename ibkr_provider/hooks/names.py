"""Default connection ids, importable without importing a hook (operators use them as
argument defaults, and DAG files import operators on every parse)."""

DEFAULT_CONN_ID = "ibkr_default"
DEFAULT_FLEX_CONN_ID = "ibkr_flex_default"
