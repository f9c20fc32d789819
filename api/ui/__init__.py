"""The web console under ``/ui``: server-rendered pages (Jinja2, htmx vendored in ``static/``) for approvers
and auditors, on the same services as the JSON API."""
