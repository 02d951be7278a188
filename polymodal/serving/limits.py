"""What one request may cost the server: the bytes of its body, counted as they arrive (a
chunked upload has no Content-Length to trust), and the memory its file cells decode to,
estimated from their headers before anything is decoded (a 140 KB PNG can hold 179 Mpx)."""

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import soundfile as sf
from fastapi.responses import JSONResponse
from PIL import Image
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BYTES_PER_VALUE = 4  # a decoded pixel (RGBA / 32-bit) or audio sample (float32)


class BodyLimit:
    """413 for a body over ``max_bytes``: at once when its Content-Length says so, else as soon
    as the bytes received pass the limit (the rest is never read). A plain ASGI middleware:
    Starlette's ``BaseHTTPMiddleware`` costs about a millisecond per request."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        size = dict(scope["headers"]).get(b"content-length", b"")
        if size.isdigit() and int(size) > self.max_bytes:
            detail = f"request body is {size.decode()} bytes; the limit is {self.max_bytes}"
            await JSONResponse(status_code=413, content={"detail": detail})(scope, receive, send)
            return
        received = 0
        over = (
            f"request body is over {self.max_bytes} bytes (sent without a Content-Length); "
            f"the limit is {self.max_bytes}"
        )

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:  # the app's HTTPException handler answers
                    raise HTTPException(413, over)
            return message

        await self.app(scope, counted, send)


def _image_values(src: Any) -> int:
    with Image.open(src) as image:  # reads the header only
        width, height = image.size
    return width * height


def _audio_values(src: Any) -> int:
    info = sf.info(src)  # reads the header only
    return max(int(info.frames), 0) * max(int(info.channels), 1)


def _video_values(src: Any) -> int:
    """A clip's decoder holds up to ``VIDEO_FRAMES_HELD`` frames (its references) at a time."""
    from polymodal.data.preprocess.video_io import Limits, probe

    target = src.getvalue() if isinstance(src, io.BytesIO) else src
    info = probe(target, Limits())  # reads the header only
    return info["width"] * info["height"] * VIDEO_FRAMES_HELD


VIDEO_FRAMES_HELD = 16  # frames a video decoder may keep at once (H.264's most references)
MEASURES: dict[str, Callable[[Any], int]] = {
    "image": _image_values,
    "audio": _audio_values,
    "video": _video_values,
}


def decoded_bytes(kind: str, target: bytes | Path) -> int:
    """About how much memory decoding one file cell takes, from its header alone; the file's own
    size when there is no header to read (the decoder will then refuse it, naming the row)."""
    measure = MEASURES.get(kind)
    if measure is not None:
        try:
            return BYTES_PER_VALUE * measure(
                io.BytesIO(target) if isinstance(target, bytes) else target
            )
        except Exception:  # no readable header: the decoder refuses the cell, naming its row
            pass
    return len(target) if isinstance(target, bytes) else target.stat().st_size


class DecodeBudget:
    """The decoded bytes one request's file cells may take together (each distinct cell counted
    once, as it is decoded once); over the budget is a 413 naming where it ran out. Path cells
    are relative to ``folder`` (the data folder)."""

    def __init__(self, max_bytes: int, folder: Path | None) -> None:
        self.left, self.max_bytes, self.folder = max_bytes, max_bytes, folder or Path()

    def spend(self, kind: str, target: bytes | str, row: int, field: str) -> None:
        self.left -= decoded_bytes(
            kind, target if isinstance(target, bytes) else self.folder / target
        )
        if self.left < 0:
            raise HTTPException(
                413,
                f"row {row}, field {field!r}: the files of this request would decode to more than "
                f"{self.max_bytes / 2**20:g} MiB, the limit per request (about "
                f"{self.max_bytes // BYTES_PER_VALUE:,} pixels or audio samples): send fewer rows "
                "or smaller files per request",
            )
