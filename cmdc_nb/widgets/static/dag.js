// DagView's canvas: draws the graph the kernel laid out (nodes with x/y, edges), coloured by status.
// A click on a node sets `selected`; the kernel shows that step's details. No network, no layout engine.
const COLORS = {
  pending: ["#f6f8fa", "#8c959f"], running: ["#ddf4ff", "#0969da"], waiting_approval: ["#fff8c5", "#9a6700"],
  completed: ["#dafbe1", "#1a7f37"], failed: ["#ffebe9", "#cf222e"], timeout: ["#ffebe9", "#cf222e"],
  skipped: ["#f6f8fa", "#afb8c1"], cancelled: ["#f6f8fa", "#6e7781"], planned: ["#ffffff", "#8c959f"],
};
const NS = "http://www.w3.org/2000/svg";

function el(name, attrs, text) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function draw(model, root) {
  const g = model.get("graph") || { nodes: [], edges: [], width: 200, height: 80 };
  const selected = model.get("selected");
  root.replaceChildren();
  // Scales down to the cell's width (never up), so a long pipeline stays whole on screen.
  const svg = el("svg", { width: "100%", viewBox: `0 0 ${g.width} ${g.height}`, class: "cmdc-dag-svg",
    style: `max-width:${g.width}px;height:auto;display:block` });
  const defs = el("defs", {});
  const marker = el("marker", { id: "cmdc-arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" });
  marker.appendChild(el("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#8c959f" }));
  defs.appendChild(marker);
  svg.appendChild(defs);
  const byId = Object.fromEntries(g.nodes.map((n) => [n.id, n]));
  for (const e of g.edges) {
    const a = byId[e[0]], b = byId[e[1]];
    if (!a || !b) continue;
    const x1 = a.x + a.w, y1 = a.y + a.h / 2, x2 = b.x, y2 = b.y + b.h / 2, mx = (x1 + x2) / 2;
    svg.appendChild(el("path", { d: `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`, fill: "none", stroke: "#afb8c1", "stroke-width": "1.5", "marker-end": "url(#cmdc-arrow)" }));
  }
  for (const n of g.nodes) {
    const [fill, stroke] = COLORS[n.status] || COLORS.pending;
    const group = el("g", { class: "cmdc-dag-node", "data-step": n.id, "data-status": n.status, cursor: "pointer" });
    group.appendChild(el("rect", { x: n.x, y: n.y, width: n.w, height: n.h, rx: 8, fill, stroke, "stroke-width": n.id === selected ? 3 : 1.5 }));
    group.appendChild(el("text", { x: n.x + 10, y: n.y + 19, "font-size": 13, "font-weight": 600, fill: "#1f2328" }, n.label));
    group.appendChild(el("text", { x: n.x + 10, y: n.y + 36, "font-size": 11, fill: stroke }, `${n.type} · ${n.status.replace("_", " ")}${n.note ? " · " + n.note : ""}`));
    group.appendChild(el("title", {}, `${n.id}: ${n.status}`));
    group.addEventListener("click", () => { model.set("selected", n.id); model.save_changes(); });
    svg.appendChild(group);
  }
  root.appendChild(svg);
}

export default {
  render({ model, el: root }) {
    root.classList.add("cmdc-dag");
    const redraw = () => draw(model, root);
    model.on("change:graph", redraw);
    model.on("change:selected", redraw);
    redraw();
  },
};
