"""Model providers: litellm for every real provider, and the offline models that stand in for them.

`stream_completion` makes one streamed call with the only retry layer and the fallback models;
`scripted` plays scripted turns and `cassette` records and replays real calls — both reached through
litellm like any provider, so the kernel cannot tell them apart. litellm itself is imported on the
first call, not here.
"""

from __future__ import annotations

from cmdc_nb.providers._call import stream_completion
from cmdc_nb.providers._embed import EmbeddingResult, embed_texts
from cmdc_nb.providers._types import (
    Completion,
    ProviderRequest,
    RetryPolicy,
    StreamPart,
    TokenUsage,
    ToolCall,
)
from cmdc_nb.providers.cassette import Cassette
from cmdc_nb.providers.choice import ModelChoice, choose_model, describe_model_choice
from cmdc_nb.providers.scripted import Script, Turn, call

__all__ = [
    "Cassette",
    "Completion",
    "EmbeddingResult",
    "ModelChoice",
    "ProviderRequest",
    "RetryPolicy",
    "Script",
    "StreamPart",
    "TokenUsage",
    "ToolCall",
    "Turn",
    "call",
    "choose_model",
    "describe_model_choice",
    "embed_texts",
    "stream_completion",
]
