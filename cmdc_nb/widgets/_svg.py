"""What every SVG chart of the widgets shares (the dashboard's snapshot and `widgets.report`)."""

from __future__ import annotations

import math

__all__ = ["ticks"]


def ticks(top: float) -> list[float]:
    """0 and round steps (1, 2, 2.5 or 5 times a power of ten) up to at least `top`; [0, 1] when
    there is nothing to scale (zero, negative or NaN)."""
    if not top > 0:
        return [0.0, 1.0]
    raw = top / 4
    mag = 10 ** math.floor(math.log10(raw))
    step = float(f"{next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9)):.12g}")
    return [float(f"{i * step:.12g}") for i in range(math.ceil(top / step - 1e-9) + 1)]
