"""One sample request per row of IBKR's pacing table (method, path below /v1/api)."""

SAMPLES: dict[str, tuple[str, str]] = {
    "marketdata_snapshot": ("GET", "/iserver/marketdata/snapshot"),
    "live_orders": ("GET", "/iserver/account/orders"),
    "trades": ("GET", "/iserver/account/trades"),
    "pnl": ("GET", "/iserver/account/pnl/partitioned"),
    "portfolio_accounts": ("GET", "/portfolio/accounts"),
    "portfolio_subaccounts": ("GET", "/portfolio/subaccounts"),
    "scanner_params": ("GET", "/iserver/scanner/params"),
    "scanner_run": ("POST", "/iserver/scanner/run"),
    "pa_performance": ("POST", "/pa/performance"),
    "pa_summary": ("POST", "/pa/summary"),
    "pa_transactions": ("POST", "/pa/transactions"),
    "fyi": ("GET", "/fyi/unreadnumber"),
    "tickle": ("POST", "/tickle"),
    "sso_validate": ("GET", "/sso/validate"),
}
