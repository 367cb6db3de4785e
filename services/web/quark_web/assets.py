"""Static files (CSS, JS, vendored HTMX) served by the web module itself, with content-hashed URLs.

`asset_url("app.css")` gives `/static/app.css?v=<hash>`; a request with the current hash is cached
for a year (immutable), any other for a minute, so a deploy never leaves a browser on stale code.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

STATIC = Path(__file__).parent / "static"
SERVED = (".css", ".js", ".svg", ".png", ".ico", ".txt", ".webmanifest")


@dataclass(frozen=True)
class Asset:
    name: str
    body: bytes
    content_type: str
    version: str


@dataclass
class Assets:
    files: dict[str, Asset]

    @classmethod
    def load(cls, folder: Path = STATIC) -> Assets:
        files: dict[str, Asset] = {}
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix in SERVED:
                body = path.read_bytes()
                kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                if kind.startswith("text/") or kind.endswith("javascript"):
                    kind += "; charset=utf-8"
                files[path.name] = Asset(path.name, body, kind, hashlib.sha256(body).hexdigest()[:12])
        return cls(files)

    def url(self, name: str) -> str:
        asset = self.files.get(name)
        return f"/static/{name}" + (f"?v={asset.version}" if asset else "")
