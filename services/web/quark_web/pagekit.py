"""What every page shares: the request's `Page` (session, language, CSRF, theme), rendering, and `WebRoute`,
the route class that wraps each page handler with CSRF checks, human error pages and security headers.

The SDK gives modules routers, not middleware, so all of this lives in the route class: a page module
only writes handlers that call the APIs and render a template.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.nodes import Call, Expr, FromImport, Macro, Name, Template
from markupsafe import _escape_inner

from quark_web import errors
from quark_web.apiclient import ApiError, ModuleDown
from quark_web.i18n import LANGUAGES, negotiate, translator
from quark_web.runtime import WebRuntime, runtime
from quark_web.sessions import WebSession

log = logging.getLogger("quark.web")

TEMPLATES = Path(__file__).parent / "templates"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_COOKIE = "quark_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
LANG_COOKIE = "quark_lang"
THEME_COOKIE = "quark_theme"
FLASH_COOKIE = "quark_flash"
THEMES = ("light", "dark")

DICT_ATTRIBUTES = frozenset(dir(dict))


def output_escape(value: Any) -> str:
    """`{{ value }}` in a page: the text markupsafe's `escape` gives, without building a `Markup` for every
    value (two Python calls each, ~40% of rendering a chat of 30 messages). What a template writes out is
    only joined into the page (a macro's or a block's output is made `Markup` as a whole), so a plain str
    does here; an int needs no escaping at all."""
    kind = type(value)
    if kind is str:
        return _escape_inner(value)
    if kind is int:
        return str(value)
    html = getattr(value, "__html__", None)
    if html is not None:
        return str(html())
    return _escape_inner(str(value))


class PageCodeGenerator(CodeGenerator):
    """Compiles `{{ ... }}` in an autoescaped template to `environment.output_escape(...)`, and calls of the
    page's translator `_` and of the template's own macros to plain calls: Jinja makes every call through
    `Context.call`, which looks for `pass_context` and the like each time — more than the translation itself
    for the ~80 labels of a chat page, and a sixth of rendering its 30 messages (one macro call each). `_` is
    always the page's translator, a plain function of one string (`i18n.translator`); a macro defined or
    imported in the template is a `Macro`, unless the template also assigns its name (then it is left alone)."""

    _plain_callees: frozenset[str] = frozenset()

    def visit_Template(self, node: Template, frame: Frame | None = None) -> None:
        macros = {m.name for m in node.find_all(Macro)}
        for imported in node.find_all(FromImport):
            macros.update(name if isinstance(name, str) else name[1] for name in imported.names)
        assigned = {n.name for n in node.find_all(Name) if n.ctx in ("store", "param")}
        self._plain_callees = frozenset({"_"} | macros) - assigned
        super().visit_Template(node, frame)

    @optimizeconst
    def visit_Call(self, node: Call, frame: Frame, forward_caller: bool = False) -> None:
        # Positional arguments only (keywords and star arguments go Jinja's own way).
        if (isinstance(node.node, Name) and node.node.name in self._plain_callees and not node.kwargs
                and node.dyn_args is None and node.dyn_kwargs is None and not forward_caller
                and not self.environment.is_async and not self.environment.sandboxed):
            self.write("(")
            self.visit(node.node, frame)
            self.write(")(")
            for i, arg in enumerate(node.args):
                if i:
                    self.write(", ")
                self.visit(arg, frame)
            self.write(")")
            return
        super().visit_Call(node, frame, forward_caller=forward_caller)

    def _output_child_pre(self, node: Expr, frame: Frame, finalize: Any) -> None:
        if frame.eval_ctx.autoescape and not frame.eval_ctx.volatile:
            self.write("environment.output_escape(")
            if finalize.src is not None:
                self.write(finalize.src)
            return
        super()._output_child_pre(node, frame, finalize)


class PageEnvironment(Environment):
    """Jinja2 for the pages. What they show are the modules' JSON answers (dicts), and Jinja looks `post.title`
    up as an attribute first: for a dict that raises and catches an AttributeError on every key read (~40% of
    rendering a chat of 30 messages). Here a dict's key is read first, unless the name is one of dict's own
    (`.items()`, `.get()` stay methods, as before); a missing key is undefined, as before. Its templates compile
    with `PageCodeGenerator`."""

    code_generator_class = PageCodeGenerator
    output_escape = staticmethod(output_escape)

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute not in DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)


# One environment, built once: templates are compiled on first use and cached. They ship with the package
# and change with it, so they are not stat()ed for changes on every render (`auto_reload`): a template edited
# in place is read when the process restarts, as a Python file is.
ENV = PageEnvironment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "xml"]),
                      trim_blocks=True, lstrip_blocks=True, enable_async=False, auto_reload=False)


def csp(rt: WebRuntime) -> str:
    """Strict: nothing inline (no nonces, no hashes), everything from this origin."""
    img = " ".join(["'self'", "data:", "blob:", *rt.settings.csp_img_sources])
    return ("default-src 'self'; script-src 'self'; style-src 'self'; img-src " + img + "; "
            "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'; manifest-src 'self'; worker-src 'self'")


def security_headers(rt: WebRuntime) -> dict[str, str]:
    return {
        "Content-Security-Policy": csp(rt),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "strict-origin-when-cross-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
    }


def safe_next(value: str | None, default: str = "/") -> str:
    """A local path to go back to; anything else (another site, //host, a scheme) is the default."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


class Redirect(Exception):
    def __init__(self, url: str) -> None:
        self.url = url


class PageError(Exception):
    """A page-level failure with a status and a (translatable) message."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


@dataclass
class Page:
    """One request as the pages see it."""

    rt: WebRuntime
    request: Request
    lang: str
    theme: str
    csrf_nonce: str
    sid: str | None = None
    session: WebSession | None = None
    flash: str | None = None
    _cookies: list[tuple[str, str | None, int | None, bool]] = field(default_factory=list)
    _new_nonce: bool = False

    @classmethod
    async def open(cls, rt: WebRuntime, request: Request, *, with_session: bool = True) -> Page:
        cookies = request.cookies
        nonce = cookies.get(CSRF_COOKIE) or ""
        new_nonce = len(nonce) < 20 or len(nonce) > 100
        if new_nonce:
            nonce = secrets.token_urlsafe(24)
        theme = cookies.get(THEME_COOKIE, "")
        page = cls(rt=rt, request=request, lang=negotiate(cookies.get(LANG_COOKIE),
                                                           request.headers.get("accept-language")),
                   theme=theme if theme in THEMES else "", csrf_nonce=nonce, _new_nonce=new_nonce)
        flash = cookies.get(FLASH_COOKIE) if with_session else None
        if flash:
            page.flash = flash if flash in errors.FLASHES else None
            page.set_cookie(FLASH_COOKIE, None)
        sid = cookies.get(rt.settings.cookie_name) if with_session else None
        if sid and 20 <= len(sid) <= 100:
            sess = await rt.sessions.load(sid)
            if sess is not None:
                sess = await rt.sessions.fresh(sid, sess)
            if sess is None:
                page.set_cookie(rt.settings.cookie_name, None)
            else:
                page.sid, page.session = sid, sess
        return page

    @property
    def flash_text(self) -> str:
        return errors.FLASHES.get(self.flash or "", "")

    # -- who ---------------------------------------------------------------------------------

    @property
    def token(self) -> str | None:
        return self.session.access_token if self.session else None

    @property
    def user(self) -> WebSession | None:
        return self.session

    def require_user(self) -> WebSession:
        if self.session is None:
            raise Redirect("/login?next=" + quote(self.request.url.path + (
                "?" + self.request.url.query if self.request.url.query else ""), safe="/"))
        return self.session

    async def sign_in(self, tokens: dict[str, Any]) -> None:
        if self.sid is not None:
            await self.rt.sessions.delete(self.sid)
        self.sid, self.session = await self.rt.sessions.create(tokens)
        self.set_cookie(self.rt.settings.cookie_name, self.sid, max_age=self.rt.settings.session_ttl)

    async def sign_out(self) -> None:
        if self.sid is not None:
            await self.rt.sessions.delete(self.sid)
        self.sid, self.session = None, None
        self.set_cookie(self.rt.settings.cookie_name, None)

    async def call(self, method: str, path: str, **kw: Any) -> Any:
        """Call a module with this person's token; a 401 once triggers a refresh and a retry."""
        try:
            return await self.rt.api.request(method, path, token=self.token, **kw)
        except ApiError as exc:
            if exc.status != 401 or self.session is None or self.sid is None:
                raise
            sess = await self.rt.sessions.refresh(self.sid, self.session)
            if sess is None:
                self.sid, self.session = None, None
                self.set_cookie(self.rt.settings.cookie_name, None)
                raise
            self.session = sess
            return await self.rt.api.request(method, path, token=self.token, **kw)

    # -- cookies, CSRF ------------------------------------------------------------------------

    def set_cookie(self, name: str, value: str | None, max_age: int | None = None, http_only: bool = True) -> None:
        self._cookies.append((name, value, max_age, http_only))

    def notice(self, key: str) -> None:
        """A one-time message shown on the next page (after a redirect)."""
        self.set_cookie(FLASH_COOKIE, key, max_age=60)

    @property
    def csrf(self) -> str:
        return self.rt.csrf_token(self.csrf_nonce)

    async def csrf_ok(self) -> bool:
        if self._new_nonce:
            return False  # no CSRF cookie: the form did not come from a page we served to this browser
        origin = self.request.headers.get("origin")
        if origin and origin != "null":
            host = self.request.headers.get("host", "")
            if urlsplit(origin).netloc != host:
                return False
        sent = self.request.headers.get(CSRF_HEADER)
        if sent is None:
            kind = self.request.headers.get("content-type", "")
            if kind.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
                form = await self.request.form()
                value = form.get(CSRF_FIELD)
                sent = value if isinstance(value, str) else None
        return sent is not None and hmac.compare_digest(sent, self.csrf)

    def finish(self, response: Response) -> Response:
        settings = self.rt.settings
        secure = settings.secure_cookies()
        if self._new_nonce:
            self.set_cookie(CSRF_COOKIE, self.csrf_nonce, max_age=365 * 86400)
        for name, value, max_age, http_only in self._cookies:
            if value is None:
                response.delete_cookie(name, path="/", secure=secure, httponly=http_only, samesite="lax")
            else:
                response.set_cookie(name, value, max_age=max_age, path="/", secure=secure, httponly=http_only,
                                    samesite="lax")
        response.headers.update(security_headers(self.rt))
        if "cache-control" not in response.headers:
            response.headers["Cache-Control"] = "private, no-cache" if self.session is None else "private, no-store"
        response.headers.setdefault("Vary", "Cookie, Accept-Language, HX-Request")
        return response

    # -- rendering ----------------------------------------------------------------------------

    @property
    def htmx(self) -> bool:
        return self.request.headers.get("hx-request") == "true"

    def context(self, **extra: Any) -> dict[str, Any]:
        return {
            "page": self, "user": self.session, "lang": self.lang, "languages": LANGUAGES,
            "_": translator(self.lang), "csrf": self.csrf, "csrf_field": CSRF_FIELD, "theme": self.theme,
            "asset": self.rt.assets.url, "path": self.request.url.path, "flash": self.flash,
            "full_path": self.request.url.path + ("?" + self.request.url.query if self.request.url.query else ""),
            **extra,
        }

    def render(self, template: str, status: int = 200, **extra: Any) -> HTMLResponse:
        html = ENV.get_template(template).render(self.context(**extra))
        return HTMLResponse(html, status_code=status)

    def error_page(self, status: int, message: str, *, degraded: str | None = None) -> HTMLResponse:
        _ = translator(self.lang)
        if self.htmx:
            resp = HTMLResponse(ENV.get_template("partials/flash.html").render(
                self.context(message=_(message), kind="error")), status_code=status)
            resp.headers["HX-Retarget"] = "#flash"
            resp.headers["HX-Reswap"] = "innerHTML"
            return resp
        return self.render("errors/error.html", status=status, status_code=status, message=_(message),
                           degraded=degraded)


def page_of(request: Request) -> Page:
    page: Page = request.state.page
    return page


class WebRoute(APIRoute):
    """Route class of every page: opens the `Page`, refuses a state change without a valid CSRF token,
    turns module errors into human pages and adds the security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def wrapped(request: Request) -> Response:
            rt = runtime(request)
            # Static files need no session (and must not each trigger a token refresh).
            page = await Page.open(rt, request, with_session=not request.url.path.startswith("/static/"))
            request.state.page = page
            if request.method not in SAFE_METHODS and not await page.csrf_ok():
                return page.finish(page.error_page(403, errors.CSRF_FAILED))
            try:
                response = await handler(request)
            except Redirect as r:
                response = RedirectResponse(r.url, status_code=303)
                if page.htmx:
                    response = Response(status_code=204, headers={"HX-Redirect": r.url})
            except PageError as exc:
                response = page.error_page(exc.status, exc.message)
            except ModuleDown as exc:
                response = page.error_page(503, errors.module_down(exc.module), degraded=exc.module)
            except ApiError as exc:
                status = exc.status if 400 <= exc.status < 500 else 502
                response = page.error_page(status, errors.human(exc))
            except RequestValidationError:
                response = page.error_page(422, errors.FORM_INVALID)
            return page.finish(response)

        return wrapped
