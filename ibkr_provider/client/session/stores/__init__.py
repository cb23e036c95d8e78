"""Where the shared session lives: ``base`` (the interface, leases), ``file``, ``memory``,
``redis_store``, and ``factory`` (the store a ``session_cache`` value names)."""
