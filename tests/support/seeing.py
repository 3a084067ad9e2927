"""What a user sees of a widget in real JupyterLab: measured in the browser, from the rendered page.

`Lab` is one JupyterLab server and one headless Chromium for a whole test module (the widget suite
opens every notebook in the same session). `Lab.open(name, cells)` writes a notebook, opens it and runs
it; `Lab.view(theme, width)` switches JupyterLab's theme (through its own command, so every
`--jp-*` variable changes as a user's click would change it) and the window's width. Then:

- `overflow(selector)`: the elements of a widget wider than their box (a horizontal scrollbar, clipped
  content) — code blocks and tables that scroll on purpose excepted;
- `low_contrast(selector)`: every text whose colour against its rendered background is under 4.5:1
  (WCAG AA), computed from the colours the browser drew, alpha blended over the layers behind it;
- `in_view(selector, item)`: whether `item` (the newest message, a card) is inside the visible part of
  the scrolling log that holds it and of the window;
- `console_errors`: every error the page logged or threw.

Screenshots go to `ci-artifacts/screenshots/<name>.png`.

The browser lives on a thread of its own. Playwright's synchronous API keeps its event loop marked as
running on the thread that started it, for as long as the browser is open; on the test worker's main
thread that would make every later `asyncio.run` in the same worker fail. `lab()` hands out the `Lab`
through `OnThread`, which runs every call (and every call on what it returns: pages, locators) on the
browser's thread, so tests use it as if it were local.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from browser import (
    CHROMIUM_ARGS,
    RETRY_MS,
    SCREENSHOTS,
    WAIT_MS,
    chromium,
    jupyterlab,
    screenshot,
    write_notebook,
)

# The name each theme's screenshots carry.
THEMES = {"JupyterLab Light": "light", "JupyterLab Dark": "dark", "JupyterLab Dark High Contrast": "contrast"}
WIDTHS = (760, 1280)
# Every widget is looked at in each of these: Light and Dark in a narrow and a wide window, and the
# High Contrast theme (dark, brighter borders and text) wide.
LOOKS = (
    ("JupyterLab Light", 760),
    ("JupyterLab Light", 1280),
    ("JupyterLab Dark", 760),
    ("JupyterLab Dark", 1280),
    ("JupyterLab Dark High Contrast", 1280),
)


def look_name(theme: str, width: int) -> str:
    """`light-760`, `dark-1280`, `contrast-1280`: the suffix of a look's screenshot."""
    return f"{THEMES[theme]}-{width}"


# Contrast of every visible text under `root`, against the colours behind it (WCAG 2's formula).
_CONTRAST_JS = """
(sel) => {
  const parse = (c) => {
    const m = /rgba?\\(([^)]+)\\)/.exec(c || "");
    if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, under) => {
    const a = top[3];
    return [0, 1, 2].map((i) => top[i] * a + under[i] * (1 - a)).concat([1]);
  };
  const lum = (c) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
  };
  const layersBehind = (el) => {
    const layers = [];
    for (let e = el; e && e.nodeType === 1; e = e.parentElement) {
      // an SVG label sits on the shape drawn before it in its group (a DAG node's box) when that shape
      // holds the label's middle (a legend's swatch beside its name does not)
      if (e instanceof SVGElement && e.parentElement) {
        const mid = ((b) => [b.left + b.width / 2, b.top + b.height / 2])(el.getBoundingClientRect());
        const holds = (s) => { const b = s.getBoundingClientRect();
          return b.left <= mid[0] && mid[0] <= b.right && b.top <= mid[1] && mid[1] <= b.bottom; };
        const shape = [...e.parentElement.children].find((s) => s !== e && /^(rect|path|circle)$/.test(s.tagName)
          && (s.compareDocumentPosition(e) & Node.DOCUMENT_POSITION_FOLLOWING) && holds(s));
        if (shape) { const f = parse(getComputedStyle(shape).fill); if (f && f[3] > 0) { layers.push(f); if (f[3] >= 1) return layers; } }
      }
      const bg = parse(getComputedStyle(e).backgroundColor);
      if (bg && bg[3] > 0) { layers.push(bg); if (bg[3] >= 1) return layers; }
    }
    layers.push([255, 255, 255, 1]);
    return layers;
  };
  const visible = (el) => {
    const r = el.getBoundingClientRect();
    const s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== "hidden" && s.display !== "none" && Number(s.opacity) > 0.05;
  };
  const out = [];
  for (const root of document.querySelectorAll(sel)) {
    for (const el of [root, ...root.querySelectorAll("*")]) {
      const own = [...el.childNodes].filter((n) => n.nodeType === 3 && n.textContent.trim()).map((n) => n.textContent.trim()).join(" ");
      if (!own || !visible(el) || el.closest("button:disabled, [disabled], .jp-mod-disabled")) continue;
      const style = getComputedStyle(el);
      const layers = layersBehind(el);
      let bg = layers.pop();
      while (layers.length) bg = over(layers.pop(), bg);
      let fg = parse(el instanceof SVGElement ? style.fill : style.color);
      if (!fg) continue;
      fg = over(fg, bg);
      const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
      const ratio = (hi + 0.05) / (lo + 0.05);
      if (ratio < 4.5) out.push({ text: own.slice(0, 60), ratio: Math.round(ratio * 100) / 100,
        fg: style.color, bg: "rgb(" + bg.slice(0, 3).map(Math.round).join(",") + ")", cls: String(el.className && el.className.baseVal !== undefined ? el.className.baseVal : el.className).slice(0, 60) });
    }
  }
  return out;
}
"""

# Elements of a widget wider than their box. Blocks that scroll sideways on purpose (code, tables,
# a plotly modebar) are left out: a user expects those to scroll.
_OVERFLOW_JS = """
(sel) => {
  const out = [];
  for (const root of document.querySelectorAll(sel)) {
    const area = root.closest(".jp-OutputArea-output") || root;
    for (const el of [area, root, ...root.querySelectorAll("*")]) {
      if (el.closest("pre, table, .cmdc-scroll-x, .modebar")) continue;
      const s = getComputedStyle(el);
      if (s.display === "none" || el.clientWidth === 0) continue;
      const scrolls = /(auto|scroll)/.test(s.overflowX);
      const clips = s.overflowX === "hidden" || s.textOverflow === "ellipsis";
      if ((scrolls || el === area || clips) && el.scrollWidth > el.clientWidth + 1) {
        out.push({ cls: String(el.className).slice(0, 80), scroll: el.scrollWidth, client: el.clientWidth,
                   text: (el.textContent || "").trim().slice(0, 40) });
      }
    }
  }
  return out;
}
"""

# Is `item` inside what the user sees: within its scrolling log's visible box and within the window?
_IN_VIEW_JS = """
([sel, item]) => {
  const root = document.querySelector(sel);
  if (!root) return null;
  const all = root.querySelectorAll(item);
  const el = all[all.length - 1];
  if (!el) return null;
  const r = el.getBoundingClientRect();
  for (let p = el.parentElement; p; p = p.parentElement) {
    const s = getComputedStyle(p);
    if (/(auto|scroll)/.test(s.overflowY) && p.scrollHeight > p.clientHeight) {
      const b = p.getBoundingClientRect();
      if (r.bottom > b.bottom + 2 || r.top < b.top - 2) return false;
    }
  }
  return r.top >= 0 && r.bottom <= window.innerHeight + 2;
}
"""


# Runs `code` in the notebook's kernel through JupyterLab's own connection and returns what it printed
# (what the kernel holds, not what is drawn).
_KERNEL_JS = """
async (code) => {
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const future = kernel.requestExecute({ code, store_history: false });
  let out = "";
  future.onIOPub = (msg) => {
    if (msg.header.msg_type === "stream") out += msg.content.text;
    if (msg.header.msg_type === "error") out += msg.content.ename + ": " + msg.content.evalue;
  };
  await future.done;
  return out.trim();
}
"""

# The notebook in front has a kernel that has started (its session is ready).
_KERNEL_READY_JS = """
() => { const c = (window.jupyterapp.shell.currentWidget || {}).sessionContext;
        return !!(c && c.isReady && c.session && c.session.kernel); }
"""


# The text of the first traceback among the notebook's outputs, or null.
_FAILED_JS = """
() => { const e = document.querySelector(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] pre");
        return e && /Error|Traceback/.test(e.textContent) ? e.textContent.slice(0, 1500) : null; }
"""


class Lab:
    """One JupyterLab and one browser page for a test module; see the module's docstring."""

    def __init__(self, root: Path, url: str, page: Any) -> None:
        self.root, self.url, self.page = root, url, page
        self.console_errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        page.on("pageerror", lambda e: self.console_errors.append(str(e)))

    def open(self, name: str, cells: list[str], *, done: str) -> None:
        """Write `name`.ipynb with `cells`, open it, run every cell once its kernel is ready, and wait
        for the selector `done`."""
        write_notebook(self.root / f"{name}.ipynb", cells)
        page = self.page
        # a workspace of its own, reset: only this notebook open, so the run-all command runs it
        page.goto(f"{self.url}/lab/workspaces/{name}/tree/{name}.ipynb?reset")
        page.wait_for_function("() => window.jupyterapp && window.jupyterapp.commands", timeout=WAIT_MS)
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=WAIT_MS)
        # only once the notebook has its kernel: before that, run-all asks which kernel (a modal dialog
        # that stays over the page and swallows every later click)
        page.wait_for_function(_KERNEL_READY_JS, timeout=WAIT_MS)
        for _ in range(10):
            # started, not awaited: the command's promise settles only when every cell has finished,
            # and a cell may wait (for an approval) until the test clicks
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            try:
                page.wait_for_function(
                    "() => [...document.querySelectorAll('.jp-InputPrompt')].some(e => /\\[(\\*|\\d+)\\]/.test(e.textContent))",
                    timeout=RETRY_MS,
                )
                break
            except Exception:  # the notebook was not ready for the command: try again
                continue
        else:
            raise RuntimeError(f"the cells of {name}.ipynb never started")
        # the widget drawn, or a cell failed: a traceback says why at once, not after the whole wait
        deadline = time.monotonic() + WAIT_MS / 1000
        while page.locator(done).count() == 0:
            failed = page.evaluate(_FAILED_JS)
            if failed:
                raise AssertionError(f"a cell of {name}.ipynb failed: {failed}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{done!r} never showed in {name}.ipynb")
            page.wait_for_timeout(250)
        assert self.dialogs() == [], self.dialogs()

    def kernel(self, code: str) -> str:
        """Run `code` in the open notebook's kernel (unseen by the user) and return what it printed."""
        return str(self.page.evaluate(_KERNEL_JS, code))

    def dialogs(self) -> list[str]:
        """The text of every JupyterLab dialog open over the page (a user would have to answer it)."""
        return list(
            self.page.evaluate(
                "() => [...document.querySelectorAll('.jp-Dialog')].map(d => d.innerText.slice(0, 200))"
            )
        )

    def view(self, theme: str, width: int) -> None:
        """Switch to `theme` and a window `width` px wide, and wait until both are drawn."""
        page = self.page
        page.set_viewport_size({"width": width, "height": 1000})
        light = "true" if "Light" in theme else "false"
        page.evaluate(
            f"() => window.jupyterapp.commands.execute('apputils:change-theme', {{theme: {theme!r}}})"
        )
        page.wait_for_function(
            f"() => document.body.dataset.jpThemeLight === '{light}' && document.body.dataset.jpThemeName === {theme!r}",
            timeout=WAIT_MS,
        )
        time.sleep(0.5)  # the theme's stylesheet is applied, then widgets redraw (plotly relayouts)

    def low_contrast(self, selector: str) -> list[dict[str, Any]]:
        return list(self.page.evaluate(_CONTRAST_JS, selector))

    def overflow(self, selector: str) -> list[dict[str, Any]]:
        return list(self.page.evaluate(_OVERFLOW_JS, selector))

    def in_view(self, selector: str, item: str) -> bool | None:
        return self.page.evaluate(_IN_VIEW_JS, [selector, item])  # type: ignore[no-any-return]

    def shot(self, name: str, selector: str | None = None) -> Path:
        """A screenshot of the widget `selector` (its first match, whole, as a user scrolls to it), or
        of the window."""
        if selector:
            with contextlib.suppress(Exception):  # a widget that cannot be cut out: the window instead
                widget = self.page.locator(selector).first
                widget.scroll_into_view_if_needed(timeout=RETRY_MS)
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                path = SCREENSHOTS / f"{name}.png"
                widget.screenshot(path=str(path), timeout=RETRY_MS)
                return path
        return screenshot(self.page, f"{name}.png")


# Results that are plain data come back as they are; anything else (a page, a locator, a handle) stays
# on the browser's thread behind another OnThread.
_PLAIN = (str, bytes, int, float, bool, type(None), list, dict, tuple, Path)


class OnThread:
    """`target`, used from any thread: attribute reads and calls run on the one browser thread."""

    def __init__(self, target: Any, pool: ThreadPoolExecutor, owner: threading.Thread) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_pool", pool)
        object.__setattr__(self, "_owner", owner)

    def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is self._owner:
            return fn(*args, **kwargs)
        return self._pool.submit(fn, *args, **kwargs).result()

    def _wrap(self, value: Any) -> Any:
        return value if isinstance(value, _PLAIN) else OnThread(value, self._pool, self._owner)

    def __getattr__(self, name: str) -> Any:
        value = self._run(getattr, self._target, name)
        if callable(value) and not isinstance(value, _PLAIN):
            return lambda *a, **k: self._wrap(self._run(value, *a, **k))
        return self._wrap(value)

    def __setattr__(self, name: str, value: Any) -> None:
        self._run(setattr, self._target, name, value)

    def __repr__(self) -> str:
        return f"<on the browser thread: {self._run(repr, self._target)}>"


@contextlib.contextmanager
def lab(root: Path) -> Iterator[Lab]:
    """A JupyterLab (its app exposed to the page, for the theme command) and a headless Chromium, both
    started, used and stopped on one thread of their own (see the module's docstring)."""
    from playwright.sync_api import sync_playwright

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="browser")
    owner = pool.submit(threading.current_thread).result()
    stack = contextlib.ExitStack()

    def start() -> Lab:
        url = stack.enter_context(jupyterlab(root, expose_app=True))
        p = stack.enter_context(sync_playwright())
        browser = p.chromium.launch(executable_path=chromium(), headless=True, args=CHROMIUM_ARGS)
        stack.callback(browser.close)
        return Lab(root, url, browser.new_page(viewport={"width": WIDTHS[-1], "height": 1000}))

    try:
        yield OnThread(pool.submit(start).result(), pool, owner)  # type: ignore[misc]
    finally:
        pool.submit(stack.close).result()
        pool.shutdown()
