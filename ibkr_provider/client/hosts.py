"""Where IBKR's services live (importable without the HTTP stack)."""

#: The Web API (``/oauth2/...``, ``/gw/api/...``, ``/v1/api/...``).
DEFAULT_BASE_URL = "https://api.ibkr.com"
#: The path IBKR serves the Flex Web Service under, on any of its hosts.
FLEX_SERVICE_PATH = "/AccountManagement/FlexWebService"
#: The Flex Web Service (FLEX-GUIDE: ndcdyn.interactivebrokers.com).
DEFAULT_FLEX_URL = f"https://ndcdyn.interactivebrokers.com{FLEX_SERVICE_PATH}"
