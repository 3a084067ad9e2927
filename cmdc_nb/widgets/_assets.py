"""Where the widgets' own front end is found: the ES modules and stylesheets of the repository's
top-level `widgets/` folder.

A wheel carries that folder as `cmdc_nb/widgets/static/` (the build maps it there, see
`pyproject.toml`); a source checkout or an editable install reads it where it lives. The Python side of
each widget stays in `cmdc_nb/widgets/`, and the data stays in the kernel (anywidget's model).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

__all__ = ["asset", "asset_text"]

_PACKAGED = Path(__file__).with_name("static")
_SOURCE = Path(__file__).resolve().parents[2] / "widgets"


def asset(name: str) -> Path:
    """The path of the front-end file `name` (for example `dag.js`), packaged or in the checkout."""
    for folder in (_PACKAGED, _SOURCE):
        path = folder / name
        if path.is_file():
            return path
    raise FileNotFoundError(f"the widgets' front-end file {name!r} is missing from {_PACKAGED} and {_SOURCE}")


@cache
def asset_text(name: str) -> str:
    """The text of the front-end file `name`, read once per process."""
    return asset(name).read_text(encoding="utf-8")
