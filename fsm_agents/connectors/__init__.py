"""Built-in connectors: ordinary toolsets for the tools the seed agents API ships
(docs/architecture.md, Connectors).

Each function returns a toolset, a sequence of `Tool`s: `Agent(tools=library)` or
`Agent(tools=[*library, *search, my_tool])`.

- `code_interpreter()`: Python the model writes, run in a bubblewrap sandbox (no network, a
  read-only system, a private work folder per conversation, CPU/memory/process/output/wall-time
  limits; `fsm_agents.connectors.code_interpreter`);
- `document_library(paths | store=)`: search local documents (text, Markdown, HTML, PDF) ranked
  by SQLite FTS5 BM25, passages with citations (`fsm_agents.connectors.documents`);
- `web_search(backend)`: web search through a `SearchBackend`, `SearXNG` shipped
  (`fsm_agents.connectors.web_search`);
- `image_generation(backend)`: images through an `ImageBackend`, `OpenAIImages` shipped, saved
  as files of the conversation and returned as references (`fsm_agents.connectors.images`).
"""

from fsm_agents.connectors.code_interpreter import code_interpreter
from fsm_agents.connectors.documents import (
    DocumentLibrary,
    DocumentLibraryError,
    DocumentNotFound,
    EmptyQuery,
    IndexStats,
    Passage,
    document_library,
)
from fsm_agents.connectors.images import (
    GeneratedImage,
    ImageBackend,
    ImageBackendError,
    ImageData,
    ImageGeneration,
    ImageGenerationError,
    OpenAIImages,
    image_generation,
)
from fsm_agents.connectors.web_search import (
    EmptySearchQuery,
    SearchBackend,
    SearchConnectionError,
    SearchHTTPError,
    SearchMalformedResponse,
    SearchRateLimited,
    SearchResult,
    SearchTimeout,
    SearXNG,
    WebSearch,
    WebSearchError,
    web_search,
)

__all__ = [
    "DocumentLibrary",
    "DocumentLibraryError",
    "DocumentNotFound",
    "EmptyQuery",
    "EmptySearchQuery",
    "GeneratedImage",
    "ImageBackend",
    "ImageBackendError",
    "ImageData",
    "ImageGeneration",
    "ImageGenerationError",
    "IndexStats",
    "OpenAIImages",
    "Passage",
    "SearXNG",
    "SearchBackend",
    "SearchConnectionError",
    "SearchHTTPError",
    "SearchMalformedResponse",
    "SearchRateLimited",
    "SearchResult",
    "SearchTimeout",
    "WebSearch",
    "WebSearchError",
    "code_interpreter",
    "document_library",
    "image_generation",
    "web_search",
]
