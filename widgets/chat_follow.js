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
  const attach = () => {
    const chat = el.closest(".cmdc-chatwidget");
    log = chat && chat.querySelector(".cmdc-scroll");
    if (!log || !log.firstElementChild) { log = null; return false; }
    log.addEventListener("scroll", () => { pinned = atBottom(); if (pinned) more.hidden = true; }, { passive: true });
    const mutations = new MutationObserver(changed);
    mutations.observe(log, { childList: true, subtree: true, characterData: true });
    const sizes = new ResizeObserver(changed);
    sizes.observe(log);
    sizes.observe(log.firstElementChild);
    watchers.push(mutations, sizes);
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
