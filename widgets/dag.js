// DagView's canvas: draws the graph the kernel laid out (nodes with x/y, edges), coloured by status.
// A click on a node sets `selected`; the kernel shows that step's details. No network, no layout engine.
//
// Colours come from JupyterLab's --jp-* variables, so a node reads in Light, Dark and High Contrast: the
// box is the theme's surface and its text the theme's text colour (their contrast is the theme's own);
// the status is said in words and shown by the box's border and a stripe, never by text colour alone.
// The graph is drawn at its natural size (labels stay 13 px) and scrolls sideways inside its own box
// when wider than the cell, the way LangGraph Studio and Airflow's graph view keep labels readable.
const NS = "http://www.w3.org/2000/svg";
const STYLE_ID = "cmdc-dag-style";
const CSS = `
.cmdc-dag { max-width: 100%; overflow-x: auto; overflow-y: hidden; box-sizing: border-box;
  padding: 2px 0 4px 0; }
.cmdc-dag svg { display: block; }
.cmdc-dag .cmdc-dag-edge { fill: none; stroke: var(--jp-border-color1, #8c959f); stroke-width: 1.5; }
.cmdc-dag .cmdc-dag-arrow { fill: var(--jp-border-color1, #8c959f); }
.cmdc-dag .cmdc-dag-node rect.cmdc-dag-box { fill: var(--jp-layout-color1, #fff);
  stroke: var(--cmdc-dag-status); stroke-width: 1.5; }
.cmdc-dag .cmdc-dag-node rect.cmdc-dag-stripe { fill: var(--cmdc-dag-status); }
.cmdc-dag .cmdc-dag-node text { fill: var(--jp-ui-font-color1, #1f2328);
  font-family: var(--jp-ui-font-family, system-ui, sans-serif); }
.cmdc-dag .cmdc-dag-node text.cmdc-dag-label { font-size: 13px; font-weight: 600; }
.cmdc-dag .cmdc-dag-node text.cmdc-dag-state { font-size: 11px; }
.cmdc-dag .cmdc-dag-node.cmdc-dag-selected rect.cmdc-dag-box { stroke-width: 3; }
.cmdc-dag .cmdc-dag-node:hover rect.cmdc-dag-box { stroke-width: 2.5; }
.cmdc-dag .cmdc-dag-node:focus { outline: none; }
.cmdc-dag .cmdc-dag-node:focus-visible rect.cmdc-dag-box { stroke: var(--jp-brand-color1, #0969da); stroke-width: 3; }
.cmdc-dag-node { --cmdc-dag-status: var(--jp-border-color1, #8c959f); }
.cmdc-dag-node[data-status="running"] { --cmdc-dag-status: var(--jp-brand-color1, #0969da); }
.cmdc-dag-node[data-status="waiting_approval"], .cmdc-dag-node[data-status="waiting_input"] {
  --cmdc-dag-status: var(--jp-warn-color1, #bf8700); }
.cmdc-dag-node[data-status="completed"] { --cmdc-dag-status: var(--jp-success-color1, #1a7f37); }
.cmdc-dag-node[data-status="failed"], .cmdc-dag-node[data-status="timeout"] {
  --cmdc-dag-status: var(--jp-error-color1, #cf222e); }
.cmdc-dag-node[data-status="paused"] { --cmdc-dag-status: var(--jp-warn-color1, #bf8700); }
.cmdc-dag-node[data-status="planned"], .cmdc-dag-node[data-status="skipped"],
.cmdc-dag-node[data-status="cancelled"] { --cmdc-dag-status: var(--jp-border-color1, #8c959f); }
`;
// A mark beside the status word, so the state reads at a glance without relying on colour.
const MARK = {
  completed: "✓", failed: "✕", timeout: "✕", running: "▶", waiting_approval: "‖", waiting_input: "…", paused: "‖",
  cancelled: "–", skipped: "↷", pending: "○", planned: "○",
};

function el(name, attrs, text) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function addStyle() {
  if (document.getElementById(STYLE_ID)) return;
  const style = document.createElement("style");
  style.id = STYLE_ID;
  style.textContent = CSS;
  document.head.appendChild(style);
}

function draw(model, root) {
  const g = model.get("graph") || { nodes: [], edges: [], width: 200, height: 80 };
  const selected = model.get("selected");
  const scrolled = root.scrollLeft;
  root.replaceChildren();
  const svg = el("svg", { width: g.width, height: g.height, viewBox: `0 0 ${g.width} ${g.height}`,
    class: "cmdc-dag-svg", role: "img", "aria-label": "workflow graph" });
  const defs = el("defs", {});
  const marker = el("marker", { id: "cmdc-arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" });
  marker.appendChild(el("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "cmdc-dag-arrow" }));
  defs.appendChild(marker);
  svg.appendChild(defs);
  const byId = Object.fromEntries(g.nodes.map((n) => [n.id, n]));
  for (const e of g.edges) {
    const a = byId[e[0]], b = byId[e[1]];
    if (!a || !b) continue;
    const x1 = a.x + a.w, y1 = a.y + a.h / 2, x2 = b.x, y2 = b.y + b.h / 2, mx = (x1 + x2) / 2;
    svg.appendChild(el("path", { d: `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`, class: "cmdc-dag-edge", "marker-end": "url(#cmdc-arrow)" }));
  }
  for (const n of g.nodes) {
    const cls = "cmdc-dag-node" + (n.id === selected ? " cmdc-dag-selected" : "");
    const group = el("g", { class: cls, "data-step": n.id, "data-status": n.status, cursor: "pointer", tabindex: "0", role: "button" });
    const state = `${MARK[n.status] || "○"} ${n.status.replace("_", " ")}`;
    // the box first: it is what the labels are read against
    group.appendChild(el("rect", { class: "cmdc-dag-box", x: n.x, y: n.y, width: n.w, height: n.h, rx: 8 }));
    group.appendChild(el("text", { class: "cmdc-dag-label", x: n.x + 14, y: n.y + 19 }, n.label));
    group.appendChild(el("text", { class: "cmdc-dag-state", x: n.x + 14, y: n.y + 36 }, `${n.type} · ${state}${n.note ? " · " + n.note : ""}`));
    group.appendChild(el("rect", { class: "cmdc-dag-stripe", x: n.x + 1, y: n.y + 6, width: 5, height: n.h - 12, rx: 2 }));
    group.appendChild(el("title", {}, `${n.id}: ${n.status.replace("_", " ")}`));
    const pick = () => { model.set("selected", n.id); model.save_changes(); };
    group.addEventListener("click", pick);
    group.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); pick(); } });
    svg.appendChild(group);
  }
  root.appendChild(svg);
  root.scrollLeft = scrolled;  // a redraw (every status change) keeps where the user scrolled to
}

export default {
  render({ model, el: root }) {
    addStyle();
    // .cmdc-scroll-x: this box scrolls sideways on purpose (a wide graph), inside the output area
    root.classList.add("cmdc-dag", "cmdc-scroll-x");
    const redraw = () => draw(model, root);
    model.on("change:graph", redraw);
    model.on("change:selected", redraw);
    redraw();
  },
};
