"""Model providers: litellm for every real provider, and the offline models that stand in for them.

`stream_completion` makes one streamed call with the only retry layer and the fallback models;
`scripted` plays scripted turns and `cassette` records and replays real calls — both served in-process
exactly as litellm would serve them (`CMDC_NB_OFFLINE_VIA_LITELLM=1`: through litellm), so the kernel
cannot tell them apart and a process that only uses them never imports litellm. Nothing here imports
litellm; `cmdc_nb.kernel` starts loading it in the background for the first real call.
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
