// The Forecasts view inside Airflow's UI: the page is shown in a frame of the UI (same
// origin, sandboxed without top navigation), so a link to one of Airflow's own pages (a DAG
// run) would open a second UI inside the frame. Such links carry data-airflow-route: when
// the page is framed by Airflow, a click moves the UI itself to the link through its router
// (the URL of the parent window, then the popstate event its router listens to). Opened on
// its own, the page's links work as plain links.
"use strict";

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-airflow-route]");
  if (!link || event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  let ui;
  try {
    ui = window.parent;
    if (ui === window || ui.location.origin !== window.location.origin) return;
  } catch (error) {
    return; // another origin's frame: a plain link
  }
  event.preventDefault();
  const index = (ui.history.state && ui.history.state.idx) || 0;
  ui.history.pushState({ usr: null, key: "nuru", idx: index + 1 }, "", link.href);
  ui.dispatchEvent(new PopStateEvent("popstate", { state: ui.history.state }));
});
