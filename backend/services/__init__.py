"""Plain functions and small classes the routers delegate to; no HTTP types in here."""
