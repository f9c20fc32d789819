"""State transitions behind the routes; services never commit (the request's session does)."""
