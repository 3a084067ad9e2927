"""A stand-in for a real provider: an OpenAI-compatible chat-completions server on loopback.

litellm reaches it exactly as it reaches api.openai.com (`OPENAI_BASE_URL`, `OPENAI_API_KEY`), over
HTTP with server-sent events — so the code paths a real key takes (the provider module, the openai
client, streaming, tool calls, usage) run for real, offline. Its behaviour is simple and generic:
when tools are offered and the last message is the user's, it calls the first tool with arguments
made from the tool's JSON schema; otherwise it answers in text. Every request is recorded.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeOpenAI"]


def _example(schema: dict[str, Any], name: str) -> Any:
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "integer":
        return 2
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if kind == "array":
        return [_example(schema.get("items", {"type": "string"}), name)]
    if kind == "object":
        return {k: _example(v, k) for k, v in schema.get("properties", {}).items()}
    return "/tmp/fake.txt" if "path" in name else f"fake {name}"


def _arguments(tool: dict[str, Any]) -> dict[str, Any]:
    params = tool["function"].get("parameters") or {}
    required = params.get("required") or list(params.get("properties", {}))
    return {k: _example(params["properties"][k], k) for k in required}


class FakeOpenAI:
    """`with FakeOpenAI() as server:` then `server.base_url` and `server.requests`."""

    def __init__(self, *, reply: str = "Done, says the fake provider.") -> None:
        self.reply = reply
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                fake.authorizations.append(self.headers.get("Authorization", ""))
                chunks = fake._answer(body)
                if body.get("stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for chunk in chunks:
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.flush()
                    self.wfile.write(b"data: [DONE]\n\n")
                else:
                    payload = json.dumps(fake._whole(chunks)).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        base = {"id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": body["model"]}  # fmt: skip
        messages = body.get("messages", [])
        tools = body.get("tools") or []
        delta: dict[str, Any]
        if tools and messages and messages[-1].get("role") == "user":
            tool = tools[0]
            delta = {"role": "assistant", "content": None, "tool_calls": [{
                "index": 0, "id": f"call_{len(self.requests)}", "type": "function",
                "function": {"name": tool["function"]["name"], "arguments": json.dumps(_arguments(tool))},
            }]}  # fmt: skip
            finish = "tool_calls"
        else:
            delta = {"role": "assistant", "content": self.reply}
            finish = "stop"
        prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in messages) + 1
        chunks = [
            {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]},
        ]
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append({**base, "choices": [], "usage": {
                "prompt_tokens": prompt_tokens, "completion_tokens": 7, "total_tokens": prompt_tokens + 7}})  # fmt: skip
        return chunks

    @staticmethod
    def _whole(chunks: list[dict[str, Any]]) -> dict[str, Any]:
        delta = chunks[0]["choices"][0]["delta"]
        usage = next((c["usage"] for c in chunks if "usage" in c), None)
        return {
            "id": chunks[0]["id"], "object": "chat.completion", "created": chunks[0]["created"],
            "model": chunks[0]["model"], "usage": usage,
            "choices": [{"index": 0, "message": delta, "finish_reason": chunks[1]["choices"][0]["finish_reason"]}],
        }  # fmt: skip
