// tdpo inspect: draws the token-level view from the JSON in #tdpo-data (see tdpo/token_view/__init__.py).
// No network: everything the page needs is in the file. The URL's hash may set the view on load:
// #sort=KEY&model=M&order=asc|desc&shade=ratio|kl&token=N (token N: the N-th token drawn, 0-based,
// in data order, its details pinned).
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("tdpo-data").textContent);
  // [key, short label, what it is]
  const PAIR_KEYS = [
    ["dpo_margin", "DPO margin", "β(Δ_w − Δ_l)"], ["tdpo_margin", "TDPO margin", "β((Δ_w − Δ_l) − (D_l − D_w))"],
    ["delta_w", "Δ_w", "chosen Σ_t log-ratio"], ["delta_l", "Δ_l", "rejected Σ_t log-ratio"],
    ["kl_w", "D_w", "chosen sequential KL Σ_t KL(π_ref‖π_θ)"], ["kl_l", "D_l", "rejected sequential KL"],
    ["kl_gap", "D_l − D_w", "rejected minus chosen sequential KL"],
  ];
  const SAMPLE_KEYS = [["delta", "Δ", "Σ_t log-ratio"], ["kl", "D", "sequential KL Σ_t KL(π_ref‖π_θ)"],
    ["reward", "β Δ", "implicit reward"]];
  const KEYS = DATA.mode === "pairs" ? PAIR_KEYS : SAMPLE_KEYS;
  const tokenEls = [];
  let pinned = null;

  const num = (x) => (typeof x === "string" ? Number(x) : x);
  function fmt(x) {
    x = num(x);
    if (!Number.isFinite(x)) return String(x);
    const a = Math.abs(x);
    if (a === 0) return "0";
    return a >= 1e-3 && a < 1e5 ? x.toFixed(4) : x.toExponential(3);
  }
  const visible = (s) => s.replace(/ /g, "\u2423").replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5");
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function quantile(values, q) {
    const v = values.filter(Number.isFinite).sort((a, b) => a - b);
    return v.length ? v[Math.min(v.length - 1, Math.floor(q * v.length))] : 0;
  }
  function roundScale(x, floor) {
    x = Math.max(x, floor);
    const p = Math.pow(10, Math.floor(Math.log10(x)));
    return Math.ceil(x / p) * p;
  }

  const ratios = [], kls = [];
  for (const item of DATA.items) for (const cell of item.cells) for (const r of cell.responses) {
    for (const t of r.tokens) { ratios.push(Math.abs(num(t.lp) - num(t.lr))); kls.push(num(t.kl)); }
  }
  const SCALE = { ratio: roundScale(quantile(ratios, 0.95), 0.01), kl: roundScale(quantile(kls, 0.95), 0.001) };

  function shade(span, tok, mode) {
    let a, rgb;
    if (mode === "kl") {
      a = Math.min(1, Math.max(0, num(tok.kl)) / SCALE.kl) || (num(tok.kl) > 0 ? 1 : 0);
      rgb = "118,42,131";
    } else {
      const d = num(tok.lp) - num(tok.lr);
      a = Number.isFinite(d) ? Math.min(1, Math.abs(d) / SCALE.ratio) : 1;
      rgb = d >= 0 ? "33,102,172" : "178,24,43";
    }
    span.style.background = `rgba(${rgb},${a.toFixed(3)})`;
    span.style.color = a > 0.55 ? "#fff" : "";
  }

  function statsBlock(stats) {
    const box = el("div", "stats");
    for (const [key, label, what] of KEYS) {
      const stat = el("span", "stat");
      stat.dataset.key = key;
      stat.title = what;
      stat.append(el("span", "k", label), el("span", "v v-" + key, fmt(stats[key])));
      box.append(stat);
    }
    return box;
  }

  function responseBlock(resp, i, m, r) {
    const box = el("div", "resp resp-" + resp.role);
    box.append(el("div", "role", resp.role + " · " + resp.tokens.length + " tokens"));
    const line = el("div", "tokens");
    resp.tokens.forEach((tok, p) => {
      const span = el("span", "tok" + (tok.t === "" ? " pending" : ""), tok.t === "" ? "\u22ef" : tok.t);
      if (tok.t === "") span.title = "part of a character the next token completes";
      Object.assign(span.dataset, { item: i, model: m, resp: r, pos: p, n: tokenEls.length });
      tokenEls.push(span);
      line.append(span);
    });
    box.append(line);
    return box;
  }

  function itemCard(item, i) {
    const card = el("section", "item");
    card.dataset.i = i;
    const head = el("div", "item-head");
    head.append(el("span", "item-no", `#${i + 1}`), el("span", "item-row", `data row ${item.index}`));
    card.append(head, el("pre", "prompt", item.prompt));
    const grid = el("div", "cells");
    grid.style.gridTemplateColumns = `repeat(${DATA.models.length}, minmax(0, 1fr))`;
    item.cells.forEach((cell, m) => {
      const col = el("div", "cell");
      col.append(el("h3", "", DATA.models[m]), statsBlock(cell.stats));
      cell.responses.forEach((resp, r) => col.append(responseBlock(resp, i, m, r)));
      grid.append(col);
    });
    card.append(grid);
    return card;
  }

  function topTable(title, cls, top, label) {
    const table = el("table", "top " + cls);
    table.append(el("caption", "", title));
    for (const [id, p] of top) {
      const tr = el("tr", id === label ? "is-label" : "");
      tr.dataset.id = id;
      tr.append(el("td", "tt", visible(DATA.vocab[String(id)] ?? "?")), el("td", "tp", fmt(p)));
      table.append(tr);
    }
    return table;
  }

  function fillDetail(span) {
    const [i, m, r, p] = ["item", "model", "resp", "pos"].map((k) => Number(span.dataset[k]));
    const resp = DATA.items[i].cells[m].responses[r];
    const tok = resp.tokens[p];
    const panel = document.getElementById("detail");
    Object.assign(panel.dataset, { item: i, model: m, resp: r, pos: p, n: span.dataset.n, id: tok.id });
    const head = el("div", "d-head");
    head.append(el("span", "d-token", visible(DATA.vocab[String(tok.id)] ?? tok.t)),
      el("span", "d-where", ` id ${tok.id} · ${DATA.models[m]} · ${resp.role} token ${p + 1}/${resp.tokens.length}`));
    const nums = el("table", "d-nums");
    const rows = [["log π_θ(y_t)", "v-lp", tok.lp], ["log π_ref(y_t)", "v-lr", tok.lr],
      ["log-ratio", "v-d", num(tok.lp) - num(tok.lr)], ["KL(π_ref‖π_θ) here", "v-kl", tok.kl]];
    for (const [label, cls, value] of rows) {
      const tr = el("tr");
      tr.append(el("th", "", label), el("td", cls, fmt(value)));
      nums.append(tr);
    }
    const tops = el("div", "d-tops");
    tops.append(topTable(`π_θ top-${DATA.top_k}`, "top-policy", tok.pt, tok.id),
      topTable(`π_ref top-${DATA.top_k}`, "top-reference", tok.rt, tok.id));
    panel.replaceChildren(head, nums, tops);
    panel.hidden = false;
    place(panel, span);
  }

  function place(panel, span) {
    const r = span.getBoundingClientRect();
    const w = panel.offsetWidth, h = panel.offsetHeight;
    let left = Math.min(r.left, window.innerWidth - w - 8), top = r.bottom + 6;
    if (top + h > window.innerHeight - 8) top = Math.max(8, r.top - h - 6);
    panel.style.left = Math.max(8, left) + "px";
    panel.style.top = top + "px";
  }

  function pin(span) {
    if (pinned) pinned.classList.remove("pinned");
    pinned = span;
    if (!span) { document.getElementById("detail").hidden = true; return; }
    span.classList.add("pinned");
    fillDetail(span);
  }

  function sortItems() {
    const key = document.getElementById("sort-key").value;
    const m = Number(document.getElementById("sort-model").value);
    const sign = document.getElementById("sort-order").value === "asc" ? 1 : -1;
    const value = (i) => (key === "index" ? i : num(DATA.items[i].cells[m].stats[key]));
    const order = DATA.items.map((_, i) => i).sort((a, b) => {
      const x = value(a), y = value(b);
      if (Number.isNaN(x) !== Number.isNaN(y)) return Number.isNaN(x) ? 1 : -1;
      return key === "index" ? x - y : sign * (x - y) || a - b;
    });
    const main = document.getElementById("items");
    for (const i of order) main.append(main.querySelector(`section.item[data-i="${i}"]`));
    document.querySelectorAll(".stat").forEach((s) => s.classList.toggle("sorted", s.dataset.key === key));
    if (pinned) place(document.getElementById("detail"), pinned);
  }

  function drawLegend(mode) {
    const legend = document.getElementById("legend");
    const s = Number(SCALE[mode].toPrecision(3));  // 0.7, not 0.7000000000000001
    const bar = el("span", "bar " + mode);
    const text = mode === "kl"
      ? [`0`, `per-token KL(π_ref‖π_θ) (nats), full colour at ${s}`, `${s}`]
      : [`−${s}`, `log π_θ(y_t) − log π_ref(y_t) (nats): red lowered, blue raised by the policy, full colour at ±${s}`, `+${s}`];
    legend.replaceChildren(el("span", "lo", text[0]), bar, el("span", "hi", text[2]), el("span", "what", text[1]));
  }

  function reshade() {
    const mode = document.getElementById("shade").value;
    for (const span of tokenEls) {
      const d = span.dataset;
      shade(span, DATA.items[d.item].cells[d.model].responses[d.resp].tokens[d.pos], mode);
    }
    drawLegend(mode);
  }

  function controls() {
    const key = document.getElementById("sort-key");
    key.append(new Option("data order", "index"));
    for (const [k, label, what] of KEYS) key.append(new Option(`${label}: ${what}`, k));
    const model = document.getElementById("sort-model");
    DATA.models.forEach((name, m) => model.append(new Option(name, m)));
    for (const id of ["sort-key", "sort-model", "sort-order"]) document.getElementById(id).addEventListener("change", sortItems);
    document.getElementById("shade").addEventListener("change", reshade);
  }

  function meta() {
    const what = DATA.mode === "pairs" ? "preference pairs" : "prompts, each policy's own sample";
    document.getElementById("meta").textContent =
      `${DATA.items.length} ${what} from ${DATA.source || "?"}; policies ${DATA.models.join(", ")} against the ` +
      `reference ${DATA.reference}; β = ${DATA.beta}; ${tokenEls.length} tokens drawn (${DATA.tool}).`;
  }

  function listen() {
    const main = document.getElementById("items");
    main.addEventListener("mouseover", (e) => { if (!pinned && e.target.classList.contains("tok")) fillDetail(e.target); });
    main.addEventListener("mouseout", (e) => {
      if (!pinned && e.target.classList.contains("tok")) document.getElementById("detail").hidden = true;
    });
    document.addEventListener("click", (e) => {
      if (e.target.closest("#detail")) return;
      const span = e.target.classList.contains("tok") ? e.target : null;
      pin(span === pinned ? null : span);
      const params = new URLSearchParams(location.hash.slice(1));
      if (pinned) params.set("token", pinned.dataset.n); else params.delete("token");
      history.replaceState(null, "", "#" + params.toString());
    });
    document.addEventListener("keydown", (e) => { if (e.key === "Escape") pin(null); });
    window.addEventListener("scroll", () => { if (pinned) place(document.getElementById("detail"), pinned); },
      { passive: true });
  }

  // #sort=KEY&model=M&order=asc|desc sorts on load, #token=N pins token N's details (links, tests)
  function openFromHash(params) {
    const set = (id, value) => {
      const select = document.getElementById(id);
      if (value !== null && [...select.options].some((o) => o.value === value)) select.value = value;
    };
    set("sort-key", params.get("sort"));
    set("sort-model", params.get("model"));
    set("sort-order", params.get("order"));
    set("shade", params.get("shade"));
    reshade();
    sortItems();
    const span = tokenEls[Number(params.get("token") ?? NaN)];
    if (!span) return;
    const below = document.querySelector("header").offsetHeight, r = span.getBoundingClientRect();
    if (r.top < below || r.bottom > window.innerHeight - 220) {  // out of sight: bring it under the header
      window.scrollTo(0, Math.max(0, r.top + window.scrollY - below - 120));
    }
    pin(span);
  }

  const main = document.getElementById("items");
  DATA.items.forEach((item, i) => main.append(itemCard(item, i)));
  controls();
  meta();
  listen();
  openFromHash(new URLSearchParams(location.hash.slice(1)));
  document.body.dataset.tokens = tokenEls.length;
})();
