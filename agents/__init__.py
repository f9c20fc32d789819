"""LangGraph agents, one subpackage each; ``agents.catalog`` is the public index."""
