"""The Temporal side: workflows, activities, the worker process and the client factory."""
