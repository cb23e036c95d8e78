"""The HTTP layer: one transport for every request the client sends (the Web API, the OAuth
login steps, the Flex Web Service, the Connect IBKR consent), bounded retries, and IBKR's
pacing table with the pacer that stays under it."""
