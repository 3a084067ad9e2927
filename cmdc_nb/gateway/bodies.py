"""The JSON bodies the gateway's routes accept: strict (unknown fields refused), bounded in size."""

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = [
    "Abort",
    "AttachTool",
    "AttachTools",
    "CreateSession",
    "Decision",
    "Respond",
    "SwitchModel",
    "TextBody",
]


class CreateSession(BaseModel):
    model: str | None = Field(None, description="one of the gateway's models; its first by default")
    system_prompt: str | None = Field(None, alias="systemPrompt", max_length=100_000)
    name: str | None = Field(None, max_length=200)
    tools: list[str] = Field(default_factory=list, description="names of the gateway's tools to attach")
    user_data: dict[str, Any] = Field(default_factory=dict, alias="userData")
    prompt_mode: Literal["full", "minimal", "none"] = Field("full", alias="promptMode")

    model_config = {"populate_by_name": True, "extra": "forbid"}


class TextBody(BaseModel):
    text: str = Field(..., min_length=1, max_length=1_000_000)
    model_config = {"extra": "forbid"}


class Decision(BaseModel):
    ref: str = Field(..., min_length=1, max_length=200, description="from the approval_required event")
    note: str | None = Field(None, max_length=10_000)
    args: dict[str, Any] | None = Field(None, description="approve with edited arguments")
    remember: bool = False
    model_config = {"extra": "forbid"}


class Respond(BaseModel):
    ref: str = Field(..., min_length=1, max_length=200)
    response: str = Field(..., max_length=1_000_000)
    model_config = {"extra": "forbid"}


class Abort(BaseModel):
    reason: str | None = Field(None, max_length=1000)
    kill_tools: Literal["running", "all", "none"] = "running"
    model_config = {"extra": "forbid"}


class SwitchModel(BaseModel):
    model: str = Field(..., min_length=1, max_length=200)
    model_config = {"extra": "forbid"}


class AttachTools(BaseModel):
    names: list[str] = Field(..., min_length=1, max_length=100)
    model_config = {"extra": "forbid"}


class AttachTool(BaseModel):
    name: str = Field(..., min_length=1, max_length=200)
    model_config = {"extra": "forbid"}
