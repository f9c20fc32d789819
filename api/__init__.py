"""The HTTP API (FastAPI): runs, approvals, agents, health; problem+json errors."""
