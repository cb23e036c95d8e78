"""A local IBKR Web API for tests, the demo and docker-compose (``ibkr-sandbox serve``)."""
