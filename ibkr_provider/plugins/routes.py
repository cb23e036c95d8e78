"""Where Airflow's UI shows the plugin's pages: the ``url_route`` of each external view (the UI
serves it at ``/plugin/<route>``, framing the page). Plain constants: the plugin imports them
when it loads, in every Airflow process, so nothing heavy comes with them."""

CONNECT_ROUTE = "ibkr_connect"
PORTFOLIO_ROUTE = "ibkr_portfolio"
PORTFOLIO_RUN_ROUTE = "ibkr_portfolio_run"
