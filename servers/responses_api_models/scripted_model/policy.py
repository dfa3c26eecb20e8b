"""The scripted policy's decisions, as pure functions: which tools to call, with which arguments, and when to answer."""

from __future__ import annotations

import hashlib
from typing import Any


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def last_user_text(items: list[dict[str, Any]]) -> str:
    for item in reversed(items):
        if item.get("role") == "user" and item.get("type", "message") == "message":
            return text_of(item.get("content"))
    return ""


def value_for(schema: dict[str, Any], text: str) -> Any:
    """A value that satisfies a JSON schema; string fields take the user's last message."""
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object" or "properties" in schema:
        return {k: value_for(v or {}, text) for k, v in (schema.get("properties") or {}).items()}
    return {"string": text, "integer": 0, "number": 0.0, "boolean": False, "array": [], "null": None}.get(kind or "string", text)


def function_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Function tools, in either the Responses shape ({type, name, parameters}) or Chat's ({type, function})."""
    out = []
    for t in tools or []:
        if t.get("type") != "function":
            continue
        fn = t.get("function") or t
        if fn.get("name"):
            out.append({"name": fn["name"], "parameters": fn.get("parameters") or {}})
    return out


def call_id_for(name: str, seed: str) -> str:
    return "call_" + hashlib.sha1(f"{name}:{seed}".encode()).hexdigest()[:24]


def decide(tools: list[dict[str, Any]], called: set[str], user_text: str, tool_outputs: list[str]) -> tuple[list[tuple[str, dict[str, Any]]], str | None]:
    """(function calls to make, or the final answer text when every tool has been called once)."""
    pending = [t for t in tools if t["name"] not in called]
    if pending:
        return [(t["name"], value_for(t["parameters"], user_text)) for t in pending], None
    if tool_outputs:
        return [], "Here is what I found: " + " ".join(tool_outputs)
    return [], f"(scripted policy) You said: {user_text}"
