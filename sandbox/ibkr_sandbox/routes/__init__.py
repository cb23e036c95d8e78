"""The sandbox's HTTP routes, one router per part of IBKR's Web API."""
