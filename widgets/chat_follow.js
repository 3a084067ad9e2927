function render({ model, el }) {
  el.classList.add("cmdc-follow");
  const more = document.createElement("button");
  more.type = "button";
  more.className = "cmdc-follow-more";
  more.hidden = true;
  el.appendChild(more);
  let log = null;
  let pinned = true;
  const watchers = [];
  const atBottom = () => log.scrollHeight - log.scrollTop - log.clientHeight < 24;
  const toBottom = () => {
    if (!log) return;
    pinned = true;
    more.hidden = true;
    log.scrollTop = log.scrollHeight;
  };
  const changed = () => {
    if (!log) return;
    if (pinned) { toBottom(); return; }
    if (atBottom()) return;
    more.textContent = log.querySelector(".cmdc-tool.waiting") ? "approval waiting \u2193" : "new messages \u2193";
    more.hidden = false;
  };
  // Each code block of a reply gets a Copy button. The reply's HTML is redrawn by its widget (while it
  // streams, and once at its end), which drops the button: the log's observer adds it back.
  const copyText = async (text) => {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return;
    }
    // not https nor localhost: the clipboard API is absent, the older command still copies
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    const copied = document.execCommand("copy");
    area.remove();
    if (!copied) throw new Error("copy refused");
  };
  const copyButton = (title, text, extra) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "cmdc-copy" + (extra ? " " + extra : "");
    button.textContent = "Copy";
    button.title = title;
    button.addEventListener("click", async () => {
      try {
        await copyText(text());
        button.textContent = "Copied";
      } catch (error) {
        button.textContent = "Select and press Ctrl+C";
      }
      button.classList.add("cmdc-copied");
      setTimeout(() => { button.textContent = "Copy"; button.classList.remove("cmdc-copied"); }, 1500);
    });
    return button;
  };
  const addCopyButtons = () => {
    // a whole message copies as it was written (its Markdown, kept in data-md), not as it is drawn
    for (const msg of log.querySelectorAll(".cmdc-msg[data-md]")) {
      if (msg.querySelector(":scope > .cmdc-copy-msg")) continue;
      msg.appendChild(copyButton("Copy this message", () => msg.dataset.md, "cmdc-copy-msg"));
    }
    for (const pre of log.querySelectorAll(".cmdc-msg pre")) {
      if (pre.parentElement.classList.contains("cmdc-code")) continue;
      const box = document.createElement("div");
      box.className = "cmdc-code";
      pre.before(box);
      box.appendChild(pre);
      box.appendChild(copyButton("Copy this code", () => pre.textContent));
    }
  };
  // Files dropped on the chat go to Python as the message's buffers; the chat attaches them.
  const takeDrops = (chat) => {
    const hasFiles = (e) => e.dataTransfer && Array.from(e.dataTransfer.types || []).includes("Files");
    chat.addEventListener("dragover", (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = "copy";
      chat.classList.add("cmdc-drop");
    });
    chat.addEventListener("dragleave", (e) => {
      if (!chat.contains(e.relatedTarget)) chat.classList.remove("cmdc-drop");
    });
    chat.addEventListener("drop", async (e) => {
      if (!hasFiles(e) || !e.dataTransfer.files.length) return;
      e.preventDefault();
      e.stopPropagation(); // JupyterLab would open the file in a tab
      chat.classList.remove("cmdc-drop");
      const files = Array.from(e.dataTransfer.files).slice(0, 16);
      const limit = model.get("max_bytes");
      const ok = files.filter((f) => f.size <= limit);
      const buffers = await Promise.all(ok.map((f) => f.arrayBuffer()));
      model.send(
        { kind: "files", names: ok.map((f) => f.name), too_big: files.filter((f) => f.size > limit).map((f) => f.name) },
        undefined,
        buffers,
      );
    });
  };
  const attach = () => {
    const chat = el.closest(".cmdc-chatwidget");
    log = chat && chat.querySelector(".cmdc-scroll");
    if (!log || !log.firstElementChild) { log = null; return false; }
    log.addEventListener("scroll", () => { pinned = atBottom(); if (pinned) more.hidden = true; }, { passive: true });
    const mutations = new MutationObserver(() => { addCopyButtons(); changed(); });
    mutations.observe(log, { childList: true, subtree: true, characterData: true });
    addCopyButtons();
    const sizes = new ResizeObserver(changed);
    sizes.observe(log);
    sizes.observe(log.firstElementChild);
    watchers.push(mutations, sizes);
    takeDrops(chat);
    toBottom();
    return true;
  };
  // The element is drawn before it is placed in the chat: wait (a few frames) until it is.
  let tries = 0;
  const tryAttach = () => { if (!attach() && tries++ < 600) requestAnimationFrame(tryAttach); };
  requestAnimationFrame(tryAttach);
  more.addEventListener("click", toBottom);
  model.on("change:pins", toBottom);
  return () => watchers.forEach((w) => w.disconnect());
}
export default { render };
