"""`image_generation`: let an agent make images through a pluggable backend.

A backend is anything with `async generate(prompt, *, n, size) -> Sequence[ImageData]` (the
`ImageBackend` protocol). Shipped: `OpenAIImages`, the OpenAI-compatible images API
(https://platform.openai.com/docs/api-reference/images/create): `POST {base_url}/images/generations`
with `{"model", "prompt", "n", "size", "response_format": "b64_json"}`, answering
`{"created", "data": [{"b64_json", "revised_prompt"}]}` (an item with a `url` instead is
downloaded); an error answers `{"error": {"message", "type", "code"}}` with a 4xx/5xx status.

The images never enter the conversation: each is written to a file in the folder of the
conversation (`<folder>/<run id>/`, the run id being `fsm_agents.tools.current_run_id()`; the
toolset's folder itself outside a run) and the tool returns `GeneratedImage` references (path,
size in bytes, MIME type), so the history holds paths, not base64.

Errors: everything a backend call can fail with ends as an `ImageGenerationError`: the API's
refusal (4xx, its message), a server error (5xx), a rate limit, a timeout or an unreachable
server after the retries (`ImageBackendError`, with `status` and `code` when known), and an answer
without a decodable image (`ImageGenerationError`). Inside a run the tool executor feeds the
message back to the model. Retries (429, 5xx, timeouts) and API-key hygiene are those of the
model clients (`fsm_agents.models._http`).
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlparse

import anyio
import httpx
import pydantic_core
from pydantic import BaseModel, ConfigDict

from fsm_agents.errors import FsmAgentsError, InvalidDefinition
from fsm_agents.models._http import HTTPModel, MissingAPIKey
from fsm_agents.models.base import ModelError, ModelHTTPError, RateLimited
from fsm_agents.tools import SingleToolset, current_run_id, tool

__all__ = [
    "GeneratedImage",
    "ImageBackend",
    "ImageBackendError",
    "ImageData",
    "ImageGeneration",
    "ImageGenerationError",
    "OpenAIImages",
    "image_generation",
    "sniff_mime",
]

log = logging.getLogger("fsm_agents.connectors.images")

_SIZE = re.compile(r"^(auto|\d{2,5}x\d{2,5})$")


class ImageGenerationError(FsmAgentsError):
    """Image generation failed: a bad request, an answer without an image, a file not written."""


class ImageBackendError(ImageGenerationError):
    """The image backend refused or failed. `status` (HTTP status, or `None` for a timeout or a
    connection failure), `code` (the API's error code, e.g. `content_policy_violation`, if any)."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        self.status, self.code = status, code
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class ImageData:
    """One image as a backend returns it: its bytes, their MIME type if the backend said, and the
    prompt the backend actually used if it revised it."""

    data: bytes
    mime: str | None = None
    revised_prompt: str | None = None


class GeneratedImage(BaseModel):
    """A reference to an image written to disk: `path` (absolute), `bytes` (file size), `mime`
    (`image/png`, `image/jpeg`, `image/webp`, `image/gif` or `application/octet-stream`), and the
    backend's `revised_prompt` when it changed the prompt."""

    model_config = ConfigDict(frozen=True)

    path: str
    bytes: int
    mime: str
    revised_prompt: str | None = None


@runtime_checkable
class ImageBackend(Protocol):
    """What `image_generation` needs: `await backend.generate(prompt, n=1, size=None)` → the
    images. Raise an `ImageGenerationError` (or any exception: it is fed back to the model)."""

    async def generate(self, prompt: str, *, n: int, size: str | None) -> Sequence[ImageData]: ...


_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif"}


def sniff_mime(data: bytes) -> str | None:
    """The image type from the file's first bytes (PNG, JPEG, GIF, WebP), or `None`."""
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


class OpenAIImages(HTTPModel):
    """The OpenAI-compatible images API (see the module docstring for the wire format).

    - `model`: e.g. `"gpt-image-1"`, `"dall-e-3"`, or a local server's model name;
    - `base_url`: the API root (default OpenAI's); `api_key`: sent as a bearer token — when
      `None`, `OPENAI_API_KEY` is read only if `base_url` is api.openai.com (a key never goes to
      another server by accident);
    - `size`, `quality`: defaults sent with every request (omitted when `None`);
    - `response_format`: `"b64_json"` (default; send `None` for models that reject the field);
    - `extra`: more request fields; `timeout` (seconds per attempt), `max_retries`, `headers`,
      `transport` as for the model clients.
    """

    def __init__(
        self,
        model: str = "gpt-image-1",
        *,
        base_url: str = "https://api.openai.com/v1",
        api_key: str | None = None,
        size: str | None = None,
        quality: str | None = None,
        response_format: str | None = "b64_json",
        extra: Mapping[str, Any] | None = None,
        timeout: float = 120.0,
        max_retries: int = 2,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not model or not isinstance(model, str):
            raise InvalidDefinition(f"OpenAIImages: model must be a non-empty str, got {model!r}")
        if size is not None and not _SIZE.match(size):
            raise InvalidDefinition(f"OpenAIImages: size must be 'WIDTHxHEIGHT' or 'auto', got {size!r}")
        self._official = urlparse(base_url).hostname == "api.openai.com"
        if api_key is None and self._official:
            api_key = os.environ.get("OPENAI_API_KEY") or None
        try:
            super().__init__(
                base_url=base_url,
                api_key=api_key,
                timeout=timeout,
                max_retries=max_retries,
                headers=headers,
                transport=transport,
            )
        except ValueError as exc:
            raise InvalidDefinition(f"OpenAIImages: {exc}") from None
        self.model = model
        self.defaults: dict[str, Any] = {
            k: v for k, v in {"size": size, "quality": quality, "response_format": response_format}.items() if v is not None
        }
        self.defaults.update(extra or {})

    def __repr__(self) -> str:
        return f"OpenAIImages({self.model!r}, base_url={self.base_url!r})"

    def _auth_headers(self) -> dict[str, str]:
        if self._api_key:
            return {"authorization": f"Bearer {self._api_key}"}
        if self._official:
            raise MissingAPIKey(f"{self!r} needs an API key: pass api_key=... or set OPENAI_API_KEY")
        return {}

    async def generate(self, prompt: str, *, n: int = 1, size: str | None = None) -> tuple[ImageData, ...]:
        """`n` images for `prompt`. Raises `ImageBackendError` (refusal, server error, rate limit,
        timeout, unreachable, after the retries) or `ImageGenerationError` (no image in the answer)."""
        payload: dict[str, Any] = {"model": self.model, "prompt": prompt, "n": n, **self.defaults}
        if size is not None:
            payload["size"] = size
        try:
            answer = await self.post_json("/images/generations", payload)
        except ModelError as exc:
            raise _backend_error(self, exc) from exc
        items = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(items, list) or not items:
            raise ImageGenerationError(f"{self!r} answered without images: {str(answer)[:300]!r}")
        fmt = answer.get("output_format")
        mime = f"image/{'jpeg' if fmt == 'jpg' else fmt}" if isinstance(fmt, str) and fmt else None
        images = []
        for item in items:
            if not isinstance(item, dict):
                raise ImageGenerationError(f"{self!r}: an image entry is not an object: {str(item)[:100]!r}")
            revised = item.get("revised_prompt") if isinstance(item.get("revised_prompt"), str) else None
            if isinstance(item.get("b64_json"), str):
                try:
                    data = base64.b64decode(item["b64_json"], validate=True)
                except (binascii.Error, ValueError):
                    raise ImageGenerationError(f"{self!r}: b64_json is not valid base64") from None
            elif isinstance(item.get("url"), str):
                data = await self._download(item["url"])
            else:
                raise ImageGenerationError(f"{self!r}: an image entry has neither b64_json nor url: {sorted(item)}")
            images.append(ImageData(data=data, mime=mime, revised_prompt=revised))
        return tuple(images)

    async def _download(self, url: str) -> bytes:
        client = self._client_for_loop()
        try:
            with anyio.fail_after(self.timeout):
                response = await client.get(url)
        except (httpx.HTTPError, TimeoutError) as exc:
            raise ImageBackendError(f"{self!r}: cannot download the image at {url} ({type(exc).__name__})") from None
        if response.status_code >= 400:
            raise ImageBackendError(
                f"{self!r}: downloading the image at {url} answered HTTP {response.status_code}", status=response.status_code
            )
        return response.content


def _backend_error(backend: OpenAIImages, exc: ModelError) -> ImageBackendError:
    if isinstance(exc, ModelHTTPError):
        message, code = exc.body[:300], None
        try:
            error = pydantic_core.from_json(exc.body).get("error")
            if isinstance(error, dict):
                message = str(error.get("message") or message)
                code = str(error.get("code") or error.get("type") or "") or None
        except (ValueError, AttributeError):
            pass
        if isinstance(exc, RateLimited):
            return ImageBackendError(
                f"{backend!r} is rate limiting (HTTP {exc.status}): {message}; try again later", status=exc.status, code=code
            )
        what = "refused the request" if exc.status < 500 else "failed"
        detail = f", {code}" if code else ""
        return ImageBackendError(f"{backend!r} {what} (HTTP {exc.status}{detail}): {message}", status=exc.status, code=code)
    return ImageBackendError(f"{backend!r}: {exc}")


def _safe_segment(segment: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", segment)[:100]
    return "_" if cleaned in ("", ".", "..") else cleaned


class ImageGeneration(SingleToolset):
    """The toolset of `image_generation`: one `Tool` (default name `generate_image`; arguments
    `prompt`, optionally `n` and `size`) that writes the images to the conversation's folder and
    returns a JSON list of `GeneratedImage` references. `folder` is the toolset's root folder."""

    def __init__(self, backend: ImageBackend, *, folder: Path, name: str, description: str | None, max_images: int) -> None:
        self.backend = backend
        self.folder = folder
        self.max_images = max_images

        async def generate_image(prompt: str, n: int = 1, size: str | None = None) -> list[GeneratedImage]:
            """Generate images from a text description; returns the files written (path, bytes, mime).

            Args:
                prompt: a detailed description of the image.
                n: how many images.
                size: WIDTHxHEIGHT, e.g. 1024x1024 (default: the backend's).
            """
            return await self.generate(prompt, n=n, size=size)

        self._tool = tool(
            name=name,
            description=description
            or "Generate images from a text description. Returns the image files written (path, bytes, mime).",
        )(generate_image)

    def folder_for(self, run_id: str | None) -> Path:
        """The folder of one conversation: `<folder>/<run id>` (each `/`-separated part of the
        id made file-name safe), or `folder` itself for `None`."""
        if run_id is None:
            return self.folder
        return self.folder.joinpath(*(_safe_segment(part) for part in run_id.split("/")))

    async def generate(self, prompt: str, *, n: int = 1, size: str | None = None) -> list[GeneratedImage]:
        """Generate `n` images, write them to the current conversation's folder, return their
        references. Raises `ImageGenerationError` for a blank prompt, a bad `n` or `size`, a
        failed write, and the backend's errors."""
        if not prompt.strip():
            raise ImageGenerationError("the prompt is empty: describe the image to generate")
        if not 1 <= n <= self.max_images:
            raise ImageGenerationError(f"n must be between 1 and {self.max_images}, got {n}")
        if size is not None and not _SIZE.match(size):
            raise ImageGenerationError(f"size must be WIDTHxHEIGHT (e.g. 1024x1024) or auto, got {size!r}")
        images = await self.backend.generate(prompt.strip(), n=n, size=size)
        folder = self.folder_for(current_run_id())
        return await anyio.to_thread.run_sync(_write_images, folder, list(images))

    def __repr__(self) -> str:
        return f"ImageGeneration({self.backend!r}, folder={str(self.folder)!r}, tool={self._tool.name!r})"


def _write_images(folder: Path, images: list[ImageData]) -> list[GeneratedImage]:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageGenerationError(f"cannot create the image folder {folder}: {exc}") from None
    refs = []
    for image in images:
        if not image.data:
            raise ImageGenerationError("the backend returned an empty image")
        mime = sniff_mime(image.data) or image.mime or "application/octet-stream"
        path = folder / f"image-{uuid.uuid4().hex[:12]}{_EXTENSIONS.get(mime, '.bin')}"
        try:
            with path.open("xb") as f:
                f.write(image.data)
        except OSError as exc:
            raise ImageGenerationError(f"cannot write {path}: {exc}") from None
        log.info("image written: %s (%d bytes, %s)", path, len(image.data), mime)
        refs.append(GeneratedImage(path=str(path), bytes=len(image.data), mime=mime, revised_prompt=image.revised_prompt))
    return refs


def image_generation(
    backend: ImageBackend,
    *,
    folder: str | os.PathLike[str] | None = None,
    max_images: int = 4,
    name: str = "generate_image",
    description: str | None = None,
) -> ImageGeneration:
    """An image-generation toolset over `backend` (e.g. `OpenAIImages("gpt-image-1")`).

    - `folder`: where images go, one sub-folder per conversation (created when needed); default:
      a new temporary folder for this toolset (`ImageGeneration.folder`), which is not deleted;
    - `max_images`: the most images one call may ask for;
    - `name`, `description`: the tool as the model sees it.

    Raises `InvalidDefinition` for a backend without `async generate(prompt, *, n, size)`,
    `max_images` < 1, or a `folder` that exists and is not a folder.
    """
    if not isinstance(backend, ImageBackend):
        raise InvalidDefinition(
            f"image_generation: backend must have async generate(prompt, *, n, size) (e.g. OpenAIImages()), "
            f"got {type(backend).__name__}"
        )
    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
        raise InvalidDefinition(f"image_generation: max_images must be an int >= 1, got {max_images!r}")
    if folder is None:
        root = Path(tempfile.mkdtemp(prefix="fsm-agents-images-"))
    else:
        root = Path(folder).expanduser().resolve()
        if root.exists() and not root.is_dir():
            raise InvalidDefinition(f"image_generation: folder {str(root)!r} exists and is not a folder")
    return ImageGeneration(backend, folder=root, name=name, description=description, max_images=max_images)
