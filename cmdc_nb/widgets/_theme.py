"""The look of the panels (cost dashboard, approval queue, plan, index builder, activity feed): one
stylesheet drawn only from JupyterLab's `--jp-*` variables, so every panel follows Light, Dark and High
Contrast as the rest of JupyterLab does.

Rules the colours keep (each checked in the browser at ≥ 4.5:1, WCAG AA):
- text sits on `--jp-layout-color1` in `--jp-ui-font-color1` (or `2`, which holds 4.5:1 only there);
- a state (ok, waiting, failed…) is coloured with the `--cmdc-*` shades below, which JupyterLab's
  themes offer at readable contrast only at one end of their scale: the dark end (`*-color0`) on a
  light theme, the light end (`*-color2`) on a dark one; `body[data-jp-theme-light]` says which;
- a warning shade is too pale for text on a light theme at any step, so it colours borders only;
- plotly draws its charts on a transparent paper and its texts take the theme's font colour here
  (the kernel does not know the theme; CSS follows a theme switch without a round trip).
"""

from __future__ import annotations

__all__ = ["PANEL_CSS"]

PANEL_CSS = """
<style>
.cmdc-panel {
  --cmdc-ok: var(--jp-success-color0, #1b5e20); --cmdc-error: var(--jp-error-color0, #b71c1c);
  --cmdc-info: var(--jp-brand-color0, #0d47a1); --cmdc-warn-line: var(--jp-warn-color1, #f57c00);
  --cmdc-muted: var(--jp-ui-font-color2, rgba(0, 0, 0, 0.54));
  box-sizing: border-box; max-width: 100%; min-width: 0; overflow: hidden;
  font-family: var(--jp-ui-font-family, system-ui, sans-serif); font-size: 13px;
  color: var(--jp-ui-font-color1, #1f2328); background: var(--jp-layout-color1, #fff);
  border: 1px solid var(--jp-border-color2, #d0d7de); border-radius: 10px; padding: 8px;
}
body[data-jp-theme-light="false"] .cmdc-panel {
  --cmdc-ok: var(--jp-success-color2, #81c784); --cmdc-error: var(--jp-error-color2, #e57373);
  --cmdc-info: var(--jp-brand-color2, #64b5f6); --cmdc-warn-line: var(--jp-warn-color2, #ffb74d);
}
.cmdc-panel * { box-sizing: border-box; }
/* ipywidgets give an HTML widget the line height of a button (28 px): wrapped text reads as text */
.cmdc-panel .widget-html-content { line-height: 1.45; }
.cmdc-panel .cmdc-row { flex-wrap: wrap; gap: 4px 8px; align-items: center; max-width: 100%; }
.cmdc-panel .cmdc-row > * { min-width: 0; }
.cmdc-panel .cmdc-title { font-weight: 600; font-size: 14px; color: var(--jp-ui-font-color1, #1f2328); }
.cmdc-panel .cmdc-stats, .cmdc-panel .cmdc-meta { color: var(--cmdc-muted); font-size: 12px; overflow-wrap: anywhere; }
.cmdc-panel .cmdc-notice { color: var(--cmdc-muted); font-size: 12px; font-style: italic; margin: 4px 0; }
.cmdc-panel .cmdc-error-text { color: var(--cmdc-error); }
.cmdc-panel code { font-family: var(--jp-code-font-family, monospace); font-size: 12px;
  background: var(--jp-layout-color2, #eee); color: var(--jp-ui-font-color1, #1f2328); padding: 0 4px; border-radius: 4px; }
.cmdc-panel pre { background: var(--jp-layout-color0, #fff); color: var(--jp-content-font-color1, #1f2328);
  border: 1px solid var(--jp-border-color2, #e0e0e0); border-radius: 6px; padding: 6px; }
.cmdc-panel summary { color: var(--jp-ui-font-color1, #1f2328); cursor: pointer; }
.cmdc-panel table { border-collapse: collapse; max-width: 100%; }
/* a table wider than a narrow output area scrolls inside its own box, the panel keeps its width */
.cmdc-panel .cmdc-scroll-x { overflow-x: auto; max-width: 100%; }
.cmdc-panel table.cmdc-status td, .cmdc-panel table.cmdc-status th { white-space: nowrap; }  /* scrolls, never breaks a name */
.cmdc-panel .widget-html:has(.cmdc-scroll-x), .cmdc-panel .widget-html-content:has(.cmdc-scroll-x) { min-width: 0; max-width: 100%; }
.cmdc-panel td { padding: 1px 6px; vertical-align: top; overflow-wrap: anywhere; }
.cmdc-panel th { padding: 1px 6px; text-align: left; font-weight: 600; border-bottom: 1px solid var(--jp-border-color2, #e0e0e0); }
/* badges: the state is the border (and the text where its shade reads in this theme) */
.cmdc-panel .cmdc-badge { display: inline-block; padding: 0 6px; margin-left: 6px; border-radius: 10px; font-size: 11px;
  background: var(--jp-layout-color1, #fff); color: var(--jp-ui-font-color1, #1f2328); border: 1px solid var(--jp-border-color1, #bdbdbd); }
.cmdc-panel .cmdc-badge.ok, .cmdc-panel .cmdc-pill { border-color: var(--cmdc-ok); color: var(--cmdc-ok); }
.cmdc-panel .cmdc-badge.error, .cmdc-panel .cmdc-badge.cmdc-risk-critical { border-color: var(--cmdc-error); color: var(--cmdc-error); font-weight: 600; }
.cmdc-panel .cmdc-badge.running { border-color: var(--cmdc-info); color: var(--cmdc-info); }
.cmdc-panel .cmdc-badge.waiting, .cmdc-panel .cmdc-badge.cmdc-risk-high { border-color: var(--cmdc-warn-line); border-width: 2px; }
.cmdc-panel .cmdc-badge.cmdc-risk-high { font-weight: 600; }
.cmdc-panel .cmdc-badge.cmdc-risk-medium { border-color: var(--cmdc-warn-line); }
.cmdc-panel .cmdc-pill { display: inline-block; padding: 0 8px; border-radius: 10px; font-size: 12px; border: 1px solid;
  background: var(--jp-layout-color1, #fff); margin-right: 4px; }
/* queue items and search hits: a card on the panel's own background */
.cmdc-panel .cmdc-queue-item { border: 1px solid var(--jp-border-color2, #e0e0e0); border-left: 4px solid var(--cmdc-warn-line);
  border-radius: 8px; padding: 6px 10px; margin: 4px 0; background: var(--jp-layout-color1, #fff); max-width: 100%; }
.cmdc-panel .cmdc-hit { border-left-color: var(--cmdc-info); }
.cmdc-panel .cmdc-hit pre { white-space: pre-wrap; overflow-wrap: anywhere; margin: 4px 0; max-height: 160px; overflow: auto; }
/* the query's words in a hit: JupyterLab's own search-match colours (dark text on yellow in every theme) */
.cmdc-panel .cmdc-hit mark { background: var(--jp-search-selected-match-background-color, rgb(255 225 0));
  color: var(--jp-search-selected-match-color, #000); border-radius: 2px; padding: 0 1px; }
.cmdc-panel .cmdc-relevance { cursor: help; }
/* the plan's checklist: the icon carries the state's colour, the text stays the theme's */
.cmdc-panel .cmdc-step { margin: 2px 0; overflow-wrap: anywhere; }
.cmdc-panel .cmdc-step-icon { font-weight: 600; display: inline-block; width: 1.2em; }
.cmdc-panel .cmdc-step.pending .cmdc-step-icon, .cmdc-panel .cmdc-step.skipped .cmdc-step-icon { color: var(--cmdc-muted); }
.cmdc-panel .cmdc-step.in_progress .cmdc-step-icon { color: var(--cmdc-info); }
.cmdc-panel .cmdc-step.completed .cmdc-step-icon { color: var(--cmdc-ok); }
.cmdc-panel .cmdc-step.failed .cmdc-step-icon { color: var(--cmdc-error); }
/* ipywidgets' coloured buttons put white text on a mid shade (under 4.5:1 in both themes): use the
   deepest shade of the same hue, which holds white text at ≥ 6:1 in every theme */
.cmdc-panel .jupyter-button.mod-success { background-color: var(--md-green-900, #1b5e20); color: #fff; }
.cmdc-panel .jupyter-button.mod-danger { background-color: var(--md-red-900, #b71c1c); color: #fff; }
.cmdc-panel .jupyter-button.mod-primary { background-color: var(--md-blue-900, #0d47a1); color: #fff; }
.cmdc-panel .jupyter-button.mod-warning { background-color: var(--md-orange-900, #e65100); color: #000; }
/* the cost charts: as wide as the output area, two columns when there is room for two */
.cmdc-panel .cmdc-charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 400px), 1fr));
  gap: 8px; width: 100%; }
.cmdc-panel .cmdc-chart { min-width: 0; overflow: hidden; }
.cmdc-panel .cmdc-chart .jp-OutputArea-child, .cmdc-panel .cmdc-chart .jp-OutputArea-output { min-width: 0; overflow: hidden; }
.cmdc-panel .cmdc-chart .jp-OutputArea-prompt { display: none; }
.cmdc-panel .cmdc-chart .main-svg .xtick text, .cmdc-panel .cmdc-chart .main-svg .ytick text,
.cmdc-panel .cmdc-chart .main-svg .gtitle, .cmdc-panel .cmdc-chart .main-svg .xtitle, .cmdc-panel .cmdc-chart .main-svg .ytitle,
.cmdc-panel .cmdc-chart .main-svg .legendtext { fill: var(--jp-ui-font-color1, #1f2328) !important; }
.cmdc-panel .cmdc-chart .main-svg .gridlayer path { stroke: var(--jp-border-color2, #e0e0e0) !important; }
.cmdc-panel .cmdc-chart .main-svg .zerolinelayer path { stroke: var(--jp-border-color1, #bdbdbd) !important; }
/* plotly leaves some paths empty or line-only with SVG's default black fill: they draw nothing, but a
   measure of what lies behind a text (and a future plotly) would see black there */
.cmdc-panel .cmdc-chart .main-svg path:not([d]), .cmdc-panel .cmdc-chart .main-svg path[class*="lines-"] { fill: none; }
/* the paper, plot and legend backgrounds are transparent (see costs.py), which plotly writes as black
   at fill-opacity 0: say transparent, as the legend's click targets are */
.cmdc-panel .cmdc-chart .main-svg rect.bg, .cmdc-panel .cmdc-chart .main-svg .legendtoggle { fill: transparent !important; }
.cmdc-panel .cmdc-chart .modebar-btn path { fill: var(--jp-ui-font-color2, rgba(0, 0, 0, 0.54)) !important; }
</style>
"""
