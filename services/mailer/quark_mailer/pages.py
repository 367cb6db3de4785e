"""HTML pages of the mailer (Jinja2, autoescaped): the dev mailbox and the interim confirmation pages."""

from __future__ import annotations

from typing import Any

import jinja2
from fastapi.responses import HTMLResponse

from quark_mailer.render import TEMPLATES

_env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES / "pages"), autoescape=True,
                          undefined=jinja2.StrictUndefined)

# Pages only link to themselves and the station; nothing is framed, no script runs.
PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"


def page(template: str, status: int = 200, **values: Any) -> HTMLResponse:
    return HTMLResponse(_env.get_template(template).render(values), status_code=status,
                        headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-store",
                                 "Referrer-Policy": "no-referrer"})
