"""Uploads: streamed straight to a private folder of the request, removed when the request ends.

A request never names a server path: videos arrive as multipart file fields or ``data:`` URLs. Each
request gets its own folder (mode 700) under the server's private upload folder; :class:`RequestFolder`
removes it on the way out, whether the request succeeded, failed, timed out or the client went away.
"""

from __future__ import annotations

import base64
import binascii
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from artemis.serve.errors import ServeError

__all__ = ["Form", "RequestFolder", "Upload", "read_form", "save_data_url"]

MAX_FIELD_BYTES = 64 * 1024  # a text field (box, question...) is short
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class Upload:
    """A saved file: where it is on the server and the name the client gave it (used in messages)."""

    path: Path
    name: str


def _suffix(name: str) -> str:
    """A file suffix decoders may rely on (``.mp4``), from the client's name; never a path."""
    suffix = Path(name).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ""


def display_name(name: str | None, default: str = "video") -> str:
    """The client's file name as messages show it: its last component, tame characters only."""
    base = _SAFE_NAME.sub("_", Path((name or "").replace("\\", "/")).name).strip("._")
    return base[:100] or default


class RequestFolder:
    """A private folder for one request's uploads, deleted on exit (a context manager)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path: Path | None = None
        self.uploads: list[Upload] = []

    def __enter__(self) -> RequestFolder:
        self.path = Path(tempfile.mkdtemp(prefix="req-", dir=self.root))  # mode 700
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)

    def new_file(self, client_name: str | None) -> Upload:
        assert self.path is not None, "use RequestFolder as a context manager"
        name = display_name(client_name)
        upload = Upload(self.path / f"upload-{len(self.uploads)}{_suffix(name)}", name)
        self.uploads.append(upload)
        return upload

    def renames(self) -> dict[str, str]:
        """Server paths and the names to show instead, for error messages."""
        renames = {str(upload.path): upload.name for upload in self.uploads}
        if self.path is not None:
            renames[str(self.path)] = "<upload>"
        return renames


@dataclass
class Form:
    """The fields of a multipart form: text values and saved files."""

    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, Upload] = field(default_factory=dict)

    def file(self, name: str) -> Upload:
        if name not in self.files:
            raise ServeError(400, f"form field {name!r} is missing; send the video as a file field named {name!r}")
        return self.files[name]

    def text(self, name: str, default: str | None = None) -> str:
        value = self.fields.get(name, default)
        if value is None:
            raise ServeError(400, f"form field {name!r} is missing")
        return value

    def optional(self, name: str) -> str | None:
        value = self.fields.get(name)
        return value if value not in (None, "") else None

    def integer(self, name: str, default: int | None = None, *, low: int = 0, high: int | None = None) -> int | None:
        value = self.optional(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ServeError(400, f"form field {name}={value!r} is not an integer") from None
        if number < low or (high is not None and number > high):
            bound = f"{low}..{high}" if high is not None else f">= {low}"
            raise ServeError(400, f"form field {name}={number} is out of range; expected {bound}")
        return number

    def flag(self, name: str) -> bool:
        value = (self.optional(name) or "false").lower()
        if value not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            raise ServeError(400, f"form field {name}={value!r} is not a boolean; use true or false")
        return value in ("true", "1", "yes", "on")


class _FormReader:
    """python-multipart callbacks: text parts into memory, file parts into the request folder."""

    def __init__(self, folder: RequestFolder, file_fields: set[str], file_pattern: re.Pattern[str] | None) -> None:
        self.folder = folder
        self.file_fields = file_fields
        self.file_pattern = file_pattern
        self.form = Form()
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._name = ""
        self._text: bytearray | None = None
        self._file = None

    def on_part_begin(self) -> None:
        self._disposition = b""

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        if not self._name:
            raise ServeError(400, "a multipart part has no name; name every form field")
        if b"filename" in options:
            pattern = self.file_pattern
            if self._name not in self.file_fields and not (pattern and pattern.fullmatch(self._name)):
                allowed = f"{sorted(self.file_fields)}{f' and {pattern.pattern}' if pattern else ''}"
                raise ServeError(400, f"form field {self._name!r} is a file; only {allowed} take files")
            if self._name in self.form.files:
                raise ServeError(400, f"form field {self._name!r} was sent twice; send one file per field")
            upload = self.folder.new_file(options[b"filename"].decode("utf-8", "replace"))
            self.form.files[self._name] = upload
            self._file = upload.path.open("wb")
            self._text = None
        else:
            self._text = bytearray()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            self._file.write(data[start:end])
        elif self._text is not None:
            self._text += data[start:end]
            if len(self._text) > MAX_FIELD_BYTES:
                raise ServeError(400, f"form field {self._name!r} is longer than {MAX_FIELD_BYTES // 1024} KB")

    def on_part_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        elif self._text is not None:
            self.form.fields[self._name] = self._text.decode("utf-8", "replace")
            self._text = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


async def read_form(
    request: Request, folder: RequestFolder, file_fields: set[str], file_pattern: re.Pattern[str] | None = None
) -> Form:
    """Read a ``multipart/form-data`` body as it arrives, files straight to disk in ``folder``.

    Files are taken in the fields ``file_fields`` and in those whose names match ``file_pattern``.
    """
    content_type, options = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data" or b"boundary" not in options:
        raise ServeError(
            415,
            f"send multipart/form-data (got {content_type.decode('latin-1') or 'no content type'}); "
            "e.g. curl -F video=@clip.mp4 -F box=10,20,110,220",
        )
    reader = _FormReader(folder, file_fields, file_pattern)
    callbacks = {
        name: getattr(reader, name)
        for name in (
            "on_part_begin",
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
            "on_part_data",
            "on_part_end",
        )
    }
    try:
        parser = MultipartParser(options[b"boundary"], callbacks)  # type: ignore[arg-type]
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except FormParserError:
        raise ServeError(400, "the multipart body is malformed") from None
    finally:
        reader.close()
    return reader.form


def save_data_url(url: str, folder: RequestFolder, where: str, kind: str = "video") -> Upload:
    """Decode a ``data:video/...;base64,...`` URL (``kind="mask"``: ``data:image/png;base64,...``) into the
    request folder; ``where`` names the part."""
    example = "image/png" if kind == "mask" else "video/..."
    match = re.fullmatch(r"data:([\w.+-]+/[\w.+-]+)?((?:;[\w.+-]+=[\w.+-]+)*);base64,(.*)", url, flags=re.DOTALL)
    if match is None:
        scheme = url.split(":", 1)[0][:20] if ":" in url else "no scheme"
        raise ServeError(
            400,
            f"{where}: only data:{example};base64,... URLs are accepted (got {scheme}); the server fetches nothing",
        )
    media_type = match.group(1) or ("image/png" if kind == "mask" else "video/mp4")
    try:
        data = base64.b64decode(match.group(3), validate=True)
    except (binascii.Error, ValueError):
        raise ServeError(400, f"{where}: the data URL is not valid base64") from None
    extension = media_type.split("/", 1)[1].split("+")[0]
    upload = folder.new_file(f"{kind}.{extension}")
    upload.path.write_bytes(data)
    return upload
