"""Routers: parse, authorise, delegate."""
