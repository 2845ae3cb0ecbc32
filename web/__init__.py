"""What the HTTP services (ingest, query, notify) share: error translation, the pool, limits."""
