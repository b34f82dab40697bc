"""The pages' one script and one stylesheet, served from ``/static/`` (kept in Python so every install has them).

The script only runs the live inbox: it listens to the page's server-sent events and puts each new item,
rendered and escaped by the server, at the top of the list. There is no inline script, so the
Content-Security-Policy can forbid them.
"""

from __future__ import annotations

APP_JS = """\
"use strict";
(function () {
  var list = document.getElementById("inbox");
  if (!list || !window.EventSource) { return; }
  var status = document.getElementById("stream-status");
  var empty = document.getElementById("inbox-empty");
  var count = document.getElementById("inbox-count");
  var max = parseInt(list.getAttribute("data-max"), 10) || 50;
  var source = new EventSource(list.getAttribute("data-stream"));

  function say(state, text) {
    status.setAttribute("data-state", state);
    status.textContent = text;
  }
  source.addEventListener("open", function () {
    say("open", "Live: nya leveranser visas direkt.");
  });
  source.addEventListener("error", function () {
    if (source.readyState === EventSource.CLOSED) {
      say("closed", "Liveflödet är stängt. Ladda om sidan.");
    } else {
      say("reconnecting", "Återansluter till liveflödet …");
    }
  });
  source.addEventListener("end", function (event) {
    source.close();
    say("closed", event.data);
  });
  source.addEventListener("item", function (event) {
    var template = document.createElement("template");
    template.innerHTML = event.data;
    var item = template.content.firstElementChild;
    if (!item) { return; }
    var key = item.getAttribute("data-key");
    var known = list.querySelectorAll("li[data-key]");
    for (var i = 0; i < known.length; i++) {
      if (known[i].getAttribute("data-key") === key) { return; }
    }
    item.classList.add("new");
    list.insertBefore(item, list.firstChild);
    while (list.children.length > max) { list.removeChild(list.lastElementChild); }
    if (empty) { empty.hidden = true; }
    if (count) { count.textContent = String(list.children.length); }
  });
})();
"""

APP_CSS = """\
:root { --ink: #1b1b1b; --muted: #555; --accent: #1f5f8b; --ok: #1e6b34; --bad: #a11; --line: #d0d0d0; }
* { box-sizing: border-box; }
body { margin: 0; font-family: system-ui, "Segoe UI", Arial, sans-serif; color: var(--ink); line-height: 1.5; }
.skip { position: absolute; left: -999px; }
.skip:focus { left: 1rem; top: 1rem; background: #fff; padding: .5rem; z-index: 10; }
.top { display: flex; flex-wrap: wrap; align-items: center; gap: 1.5rem; padding: .75rem 1.5rem;
       background: var(--accent); color: #fff; }
.top a, .top button { color: #fff; }
.brand { font-weight: 700; margin: 0; }
.top nav ul { list-style: none; display: flex; gap: 1rem; margin: 0; padding: 0; }
.top a[aria-current="page"] { font-weight: 700; text-decoration-thickness: 3px; }
.who { margin-left: auto; display: flex; gap: 1rem; align-items: center; }
.who form { margin: 0; }
.who button { background: transparent; border: 1px solid #fff; padding: .25rem .75rem; cursor: pointer; }
main { max-width: 70rem; padding: 1rem 1.5rem 3rem; }
h1 { font-size: 1.6rem; }
.login label { display: block; font-weight: 600; }
.login input { font-size: 1rem; padding: .4rem; width: 20rem; max-width: 100%; }
button { font-size: 1rem; }
.error, .status-bad { color: var(--bad); }
.status-ok { color: var(--ok); }
.stream-status { font-size: .9rem; color: var(--muted); }
.stream-status[data-state="open"] { color: var(--ok); }
.inbox { list-style: none; padding: 0; }
.item { border: 1px solid var(--line); border-left: 4px solid var(--accent); padding: .5rem 1rem; margin: .5rem 0; }
.item.new { background: #f3f8fc; }
.item h3 { margin: .2rem 0; font-size: 1.05rem; }
.item .meta { font-size: .85rem; color: var(--muted); margin: .2rem 0; }
.item dl { display: grid; grid-template-columns: max-content 1fr; gap: .1rem 1rem; margin: .4rem 0; }
.item dl div { display: contents; }
.item dt { font-weight: 600; }
.item dd { margin: 0; }
table { border-collapse: collapse; margin: .5rem 0 1.5rem; font-size: .9rem; }
caption { text-align: left; font-weight: 600; padding: .3rem 0; }
th, td { border: 1px solid var(--line); padding: .25rem .5rem; text-align: left; }
td { text-align: right; }
.deadletters td, .lag td:first-child { text-align: left; }
.chart img { max-width: 100%; height: auto; border: 1px solid var(--line); }
"""
