"""Quark web client: server-rendered pages (Jinja2 + HTMX) and the backend-for-frontend API."""
