"""Scoped business tools and the connectors they talk to."""
