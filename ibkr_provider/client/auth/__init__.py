"""How the client authenticates, one module per auth type: ``oauth2`` (private_key_jwt client
assertion, access token, SSO session; ``jwt_signing`` signs), ``oauth1a`` (self-service OAuth
1.0a: live session token, HMAC-signed requests, the Connect IBKR consent), ``gateway`` (a
Client Portal Gateway holds the session); ``base`` is the interface, ``factory`` builds the
strategy an auth type's settings call for, and ``fingerprint`` names the credentials a session
was opened with."""
