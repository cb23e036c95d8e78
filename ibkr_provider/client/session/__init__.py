"""The shared session: ``manager`` (single flight, opening, brokerage set-up, recovery, logout,
locks), ``record`` (what every process reads), ``stores`` (where it lives), ``holders`` (which
session holds an IBKR user's brokerage session), ``probe`` (what a connection's Test proves),
``keepalive`` and ``locking`` (file locks and private files)."""
