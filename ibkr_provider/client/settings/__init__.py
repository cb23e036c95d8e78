"""One settings type per auth type, each parsed and checked complete once, from the
connection's fields: ``oauth2`` (``OAuth2Settings``), ``oauth1a`` (``OAuth1aSettings``),
``gateway`` (``GatewaySettings``); ``base`` holds what they share. Adding an auth type adds a
module here and leaves the others alone."""
