"""`image_generation` and the `OpenAIImages` backend against a stub server on 127.0.0.1 that
answers in the OpenAI images API's documented shape (synthetic answers, not recorded traffic):
success, an error JSON, 500, a rate limit; files land in the conversation's folder and only
references enter the history."""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import stamina
from connector_stubs import Answer, stub_server

from fsm_agents import Agent, ToolMessage, run_sync
from fsm_agents.connectors import (
    GeneratedImage,
    ImageBackendError,
    ImageData,
    ImageGenerationError,
    OpenAIImages,
    image_generation,
)
from fsm_agents.connectors.images import sniff_mime
from fsm_agents.errors import InvalidDefinition
from fsm_agents.models.scripted import ScriptedModel, call, reply

pytestmark = pytest.mark.anyio


def png(width: int = 2, height: int = 1) -> bytes:
    """A valid PNG (RFC 2083): signature, IHDR, one IDAT of black pixels, IEND."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    raw = b"".join(b"\x00" + b"\x00\x00\x00" * width for _ in range(height))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


IMAGE = png()
B64 = base64.b64encode(IMAGE).decode()


def success(*images: bytes, revised: str | None = "a red lamp, studio light") -> dict[str, object]:
    data = [{"b64_json": base64.b64encode(i).decode(), "revised_prompt": revised} for i in images]
    return {"created": 1_760_000_000, "data": data}


ERROR = {
    "error": {
        "message": "Your request was rejected as a result of our safety system.",
        "type": "invalid_request_error",
        "param": None,
        "code": "content_policy_violation",
    }
}


@pytest.fixture(autouse=True)
def no_backoff() -> Iterator[None]:
    with stamina.set_testing(True, attempts=3, cap=True):
        yield


async def test_openai_images_request_and_decoding(anyio_backend: str) -> None:
    with stub_server(Answer(200, success(IMAGE, png(3, 3)))) as stub:
        async with OpenAIImages("gpt-image-1", base_url=f"{stub.url}/v1", api_key="sk-test", quality="low") as backend:
            images = await backend.generate("a red lamp", n=2, size="1024x1024")
    assert [i.data for i in images] == [IMAGE, png(3, 3)]
    assert images[0].revised_prompt == "a red lamp, studio light"
    seen = stub.requests[0]
    assert (seen.method, seen.path) == ("POST", "/v1/images/generations")
    assert seen.json() == {
        "model": "gpt-image-1",
        "prompt": "a red lamp",
        "n": 2,
        "size": "1024x1024",
        "quality": "low",
        "response_format": "b64_json",
    }
    assert seen.headers["authorization"] == "Bearer sk-test"


async def test_the_environment_key_never_goes_to_another_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    with stub_server(Answer(200, success(IMAGE))) as stub:
        await OpenAIImages("local", base_url=stub.url, response_format=None).generate("x", n=1)
    assert "authorization" not in stub.requests[0].headers
    assert "response_format" not in stub.requests[0].json()


async def test_error_json_is_a_backend_error_with_the_api_message() -> None:
    with (
        stub_server(Answer(400, ERROR)) as stub,
        pytest.raises(ImageBackendError, match=r"refused the request.*content_policy_violation.*safety system") as info,
    ):
        await OpenAIImages("m", base_url=stub.url).generate("x", n=1)
    assert (info.value.status, info.value.code) == (400, "content_policy_violation")
    assert len(stub.requests) == 1  # a refusal is not retried


async def test_500_is_retried_then_a_backend_error() -> None:
    with (
        stub_server(*[Answer(500, {"error": {"message": "The server had an error", "type": "server_error"}})] * 3) as stub,
        pytest.raises(ImageBackendError, match=r"failed \(HTTP 500, server_error\): The server had an error") as info,
    ):
        await OpenAIImages("m", base_url=stub.url, max_retries=2).generate("x", n=1)
    assert info.value.status == 500 and len(stub.requests) == 3


async def test_rate_limit_then_success() -> None:
    with stub_server(Answer(429, ERROR, {"retry-after": "0"}), Answer(200, success(IMAGE))) as stub:
        images = await OpenAIImages("m", base_url=stub.url).generate("x", n=1)
    assert images[0].data == IMAGE and len(stub.requests) == 2


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"created": 1, "data": []}, "without images"),
        ({"created": 1, "data": [{"b64_json": "***not base64***"}]}, "not valid base64"),
        ({"created": 1, "data": [{"revised_prompt": "x"}]}, "neither b64_json nor url"),
    ],
)
async def test_answers_without_an_image(answer: dict[str, object], message: str) -> None:
    with stub_server(Answer(200, answer)) as stub, pytest.raises(ImageGenerationError, match=message):
        await OpenAIImages("m", base_url=stub.url).generate("x", n=1)


async def test_an_image_given_by_url_is_downloaded() -> None:
    with stub_server(Answer(200, {"created": 1, "data": [{"url": "PLACEHOLDER"}]}), Answer(200, IMAGE)) as stub:
        stub.answers[0] = Answer(200, {"created": 1, "data": [{"url": f"{stub.url}/files/img.png"}]})
        images = await OpenAIImages("m", base_url=stub.url).generate("x", n=1)
    assert images[0].data == IMAGE and stub.requests[1].path == "/files/img.png"


def test_an_agent_gets_references_and_the_history_holds_no_base64(tmp_path: Path) -> None:
    with stub_server(Answer(200, success(IMAGE)), Answer(400, ERROR)) as stub:
        images = image_generation(OpenAIImages("m", base_url=stub.url), folder=tmp_path / "images")
        model = ScriptedModel(
            [
                reply(None, call("generate_image", "c1", prompt="a red lamp")),
                reply(None, call("generate_image", "c2", prompt="something forbidden")),
                "Here is your lamp.",
            ]
        )
        agent = Agent("artist", "Draw what is asked.", model=model, tools=images)
        result = run_sync(agent, "Draw a red lamp", run_id="conv-7")
    assert result.ok, result.failure
    made, refused = [m for m in result.snapshot.conversation.messages if isinstance(m, ToolMessage)]
    [ref] = [GeneratedImage(**r) for r in json.loads(made.content)]
    path = Path(ref.path)
    assert path.parent == tmp_path / "images" / "conv-7" and path.suffix == ".png"
    assert path.read_bytes() == IMAGE and (ref.bytes, ref.mime) == (len(IMAGE), "image/png")
    assert refused.is_error and "safety system" in refused.content
    assert B64 not in result.snapshot.model_dump_json() and B64[:40] not in result.snapshot.model_dump_json()


async def test_folders_per_conversation_are_safe_and_none_uses_the_root(tmp_path: Path) -> None:
    class Fixed:
        async def generate(self, prompt: str, *, n: int, size: str | None) -> list[ImageData]:
            return [ImageData(IMAGE)] * n

    images = image_generation(Fixed(), folder=tmp_path)
    assert images.folder_for("parent/task-1") == tmp_path / "parent" / "task-1"
    assert images.folder_for("../../etc/x y") == tmp_path / "_" / "_" / "etc" / "x_y"
    assert images.folder_for(None) == tmp_path
    refs = await images.generate("lamp", n=2)  # outside a run
    assert [Path(r.path).parent for r in refs] == [tmp_path, tmp_path] and refs[0].path != refs[1].path


async def test_bad_requests_are_errors_before_the_backend_is_called(tmp_path: Path) -> None:
    class Never:
        async def generate(self, prompt: str, *, n: int, size: str | None) -> list[ImageData]:
            raise AssertionError("not called")

    images = image_generation(Never(), folder=tmp_path, max_images=2)
    with pytest.raises(ImageGenerationError, match="prompt is empty"):
        await images.generate("  ")
    with pytest.raises(ImageGenerationError, match="between 1 and 2"):
        await images.generate("x", n=3)
    with pytest.raises(ImageGenerationError, match="WIDTHxHEIGHT"):
        await images.generate("x", size="huge")


def test_definition_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidDefinition, match="backend"):
        image_generation(object())  # type: ignore[arg-type]
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidDefinition, match="not a folder"):
        image_generation(OpenAIImages("m", base_url="http://127.0.0.1:1"), folder=tmp_path / "file")
    with pytest.raises(InvalidDefinition, match="size"):
        OpenAIImages("m", size="big")
    default = image_generation(OpenAIImages("m", base_url="http://127.0.0.1:1"))
    assert default.folder.is_dir() and default.folder.name.startswith("fsm-agents-images-")
    default.folder.rmdir()


def test_mime_sniffing() -> None:
    assert sniff_mime(IMAGE) == "image/png"
    assert sniff_mime(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert sniff_mime(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff_mime(b"GIF89a...") == "image/gif"
    assert sniff_mime(b"plain") is None
