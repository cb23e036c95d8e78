"""IBKR's websocket: one shared socket per IBKR session and process (:mod:`.hub`), opened with
the login each auth type needs (:mod:`.login`)."""
