"""Streaming multipart/form-data: the bytes of the upload's file part, chunk by chunk, as they arrive.

Starlette's form parser spools a whole file before the handler runs, so a size limit would only
apply after the fact. This reads the request body incrementally with python-multipart's push
parser and hands on the `file` part's data as an async iterator, so storage receives the upload
while it is still arriving and a request over the limit is stopped at the limit. Small text
fields sent before the file (`purpose`) are collected; anything else is parsed and discarded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from quark_sdk.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType

FILE_FIELD = "file"
MAX_FIELD_BYTES = 256  # text fields are labels, not documents
MAX_HEADER_BYTES = 8192  # per part
MAX_PARTS = 8


@dataclass
class _Part:
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    name: str | None = None
    filename: str | None = None
    is_file: bool = False
    value: bytearray = field(default_factory=bytearray)
    header_bytes: int = 0


class MultipartUpload:
    """One multipart request body. Iterate :meth:`file_chunks` exactly once; then read the fields."""

    def __init__(self, content_type: str | None, body: AsyncIterator[bytes], *, max_body: int) -> None:
        ctype, params = parse_options_header(content_type or "")
        if ctype != b"multipart/form-data":
            raise UnsupportedMediaType("upload with Content-Type multipart/form-data and a `file` part")
        boundary = params.get(b"boundary")
        if not boundary or len(boundary) > 200:
            raise InvalidInput("multipart/form-data needs a boundary", field="Content-Type")
        self._body = body
        self._max_body = max_body
        self._received = 0
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.found_file = False
        self._file_done = False
        self._parts = 0
        self._part: _Part | None = None
        self._field_name = bytearray()
        self._field_value = bytearray()
        self._out: list[bytes] = []
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._on_part_begin,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
            },
        )

    # -- parser callbacks (synchronous, inside parser.write) ---------------------------------------

    def _on_part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise InvalidInput(f"at most {MAX_PARTS} parts per upload", field=FILE_FIELD)
        self._part = _Part()

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._grow_header(end - start)
        self._field_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._grow_header(end - start)
        self._field_value += data[start:end]

    def _grow_header(self, n: int) -> None:
        assert self._part is not None
        self._part.header_bytes += n
        if self._part.header_bytes > MAX_HEADER_BYTES:
            raise InvalidInput("multipart part headers too long", field=FILE_FIELD)

    def _on_header_end(self) -> None:
        assert self._part is not None
        self._part.headers.append((bytes(self._field_name).lower().strip(), bytes(self._field_value).strip()))
        self._field_name.clear()
        self._field_value.clear()

    def _on_headers_finished(self) -> None:
        part = self._part
        assert part is not None
        for name, value in part.headers:
            if name == b"content-disposition":
                disposition, params = parse_options_header(value)
                if disposition != b"form-data":
                    continue
                part.name = params.get(b"name", b"").decode("utf-8", "replace")
                if b"filename" in params:
                    part.filename = params[b"filename"].decode("utf-8", "replace")
        if part.name == FILE_FIELD and not self.found_file:
            part.is_file = True
            self.found_file = True
            self.filename = part.filename

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        assert part is not None
        if part.is_file:
            self._out.append(data[start:end])
        elif part.name and part.filename is None:
            part.value += data[start:end]
            if len(part.value) > MAX_FIELD_BYTES:
                raise InvalidInput(
                    f"field {part.name[:40]!r} is longer than {MAX_FIELD_BYTES} bytes", field=part.name[:40]
                )

    def _on_part_end(self) -> None:
        part = self._part
        if part is None:
            return
        if part.is_file:
            self._file_done = True
        elif part.name and part.filename is None and part.name not in self.fields:
            try:
                self.fields[part.name[:64]] = part.value.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidInput(f"field {part.name[:40]!r} is not UTF-8", field=part.name[:40]) from None
        self._part = None

    # -- driving the parser -----------------------------------------------------------------

    async def _feed_one(self) -> bool:
        """Parse the next body chunk; False at the end of the body."""
        try:
            chunk = await anext(self._body)
        except StopAsyncIteration:
            return False
        except ClientDisconnect:
            raise InvalidInput("the upload was interrupted before the end of the body", field=FILE_FIELD) from None
        self._received += len(chunk)
        if self._received > self._max_body:
            raise PayloadTooLarge(
                f"the request body exceeds {self._max_body} bytes", extra={"max_size": self._max_body}
            )
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise InvalidInput(f"malformed multipart body: {str(exc)[:120]}", field=FILE_FIELD) from None
        return True

    async def start(self) -> None:
        """Read until the file part begins (fields before it are collected); 422 if the body has none."""
        while not self.found_file:
            if not await self._feed_one():
                self._finish()
                raise InvalidInput("the upload has no `file` part", field=FILE_FIELD)

    async def file_chunks(self) -> AsyncIterator[bytes]:
        """The file part's bytes; after the last one the rest of the body is read and checked too."""
        while True:
            while self._out:
                yield self._out.pop(0)
            if self._file_done:
                break
            if not await self._feed_one():
                self._finish()
                while self._out:
                    yield self._out.pop(0)
                if not self._file_done:
                    raise InvalidInput("the multipart body ends inside the file part", field=FILE_FIELD)
                return
        # Drain what follows the file (usually only the closing boundary), discarding further file data.
        while await self._feed_one():
            self._out.clear()
        self._finish()

    def _finish(self) -> None:
        try:
            self._parser.finalize()
        except MultipartParseError as exc:
            raise InvalidInput(f"malformed multipart body: {str(exc)[:120]}", field=FILE_FIELD) from None
