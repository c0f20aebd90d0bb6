// The llmsuite console: one page over the gateway's own API, with the key the user signs in with.
//
// Why it is written this way:
// - Every value from the API (model answers, key, collection and document names) is put on the
//   page as text (textContent, createElement), never as markup; the CSP forbids inline script, so
//   even a mistake here could not run a script that arrived as data.
// - The key lives in sessionStorage only: gone when the tab closes, never in a cookie the browser
//   would send on its own (so no CSRF), never in localStorage or a URL.
// - No build step and no dependencies: the gateway serves this file as it is.
"use strict";

(() => {
  const KEY_STORE = "llmsuite.console.key";
  const main = document.getElementById("main");
  const nav = document.getElementById("nav");
  const who = document.getElementById("who");
  const menuToggle = document.getElementById("menu-toggle");
  const traceUrl = (document.querySelector('meta[name="llmsuite-trace-url"]') || {}).content || "";
  const SVG = "http://www.w3.org/2000/svg";

  const state = { key: null, me: null, view: null, requestFilters: null, chat: [] };

  // --- small DOM helpers ------------------------------------------------------------------------

  // el("button", {type: "submit", class: "primary", onclick: fn}, "Send"): attributes are set as
  // attributes, `on*` values become listeners, children are nodes or text.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else if (name === "class") node.className = value;
      else if (name === "value") node.value = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function field(label, control) {
    return el("label", {}, el("span", {}, label), control);
  }

  // A form whose submit runs `action` and shows in `out` the node it returns, or its error.
  function actionForm(out, action, ...children) {
    const submit = async (e) => {
      e.preventDefault();
      out.replaceChildren();
      try {
        const shown = await action();
        if (shown) out.append(shown);
      } catch (err) {
        out.append(alertBox(err.message));
      }
    };
    return el("form", { class: "inline", onsubmit: submit }, ...children);
  }

  function alertBox(message) {
    return el("p", { class: "alert", role: "alert" }, message);
  }

  function fmtTime(iso) {
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? String(iso || "") : d.toLocaleString();
  }

  function fmtNum(n, digits) {
    if (n === null || n === undefined || n === "") return "";
    return Number(n).toLocaleString(undefined, { maximumFractionDigits: digits === undefined ? 0 : digits });
  }

  function fmtUsd(n) {
    return n === null || n === undefined ? "" : "$" + Number(n).toFixed(6).replace(/0{1,4}$/, "");
  }

  function isoDate(d) {
    return d.toISOString().slice(0, 10);
  }

  function table(caption, headers, rows) {
    const head = el("tr", {}, headers.map((h) => el("th", { scope: "col", class: h.num ? "num" : null }, h.label || h)));
    const body = el("tbody", {}, rows);
    return el("div", { class: "table-wrap" }, el("table", {}, el("caption", {}, caption), el("thead", {}, head), body));
  }

  function cell(value, num) {
    return el("td", { class: num ? "num" : null }, value);
  }

  // --- the API ----------------------------------------------------------------------------------

  class ApiFailure extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function failureOf(resp) {
    let message = `${resp.status} ${resp.statusText}`.trim();
    try {
      const body = await resp.json();
      if (body && body.error && body.error.message) message = body.error.message;
    } catch (_) {
      // Not JSON (a proxy's page): the status line says enough.
    }
    return new ApiFailure(resp.status, message);
  }

  function headers(json) {
    const out = { Authorization: "Bearer " + state.key };
    if (json) out["Content-Type"] = "application/json";
    return out;
  }

  // The response, once it is known to be a success; an ApiFailure with the API's message otherwise.
  async function send(path, options) {
    const opts = options || {};
    const hasBody = opts.body !== undefined;
    const resp = await fetch(path, {
      method: opts.method || (hasBody ? "POST" : "GET"),
      headers: headers(hasBody),
      body: hasBody ? JSON.stringify(opts.body) : undefined,
      signal: opts.signal,
      cache: "no-store",
      credentials: "omit",
    });
    if (!resp.ok) {
      const failure = await failureOf(resp);
      // A key revoked (or expired) while signed in: back to the sign-in form, saying why.
      if (resp.status === 401 && state.me) signOut(failure.message);
      throw failure;
    }
    return resp;
  }

  async function api(path, options) {
    return (await send(path, options)).json();
  }

  function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
    const s = q.toString();
    return s ? "?" + s : "";
  }

  // --- signing in and out -----------------------------------------------------------------------

  function renderSignIn(message) {
    nav.hidden = true;
    menuToggle.hidden = true;
    who.textContent = "";
    const input = el("input", { type: "password", name: "key", autocomplete: "off", required: true, spellcheck: "false" });
    const status = el("div", {});
    if (message) status.append(alertBox(message));
    const form = el(
      "form",
      { class: "signin", onsubmit: (e) => { e.preventDefault(); signIn(input.value.trim(), status); } },
      el("h1", {}, "Sign in"),
      el("p", { class: "muted" }, "Use an llmsuite API key. It stays in this tab only and is sent to this gateway only."),
      field("API key", input),
      el("button", { type: "submit", class: "primary" }, "Sign in"),
      status,
    );
    main.replaceChildren(form);
    input.focus();
  }

  async function signIn(key, status) {
    status.replaceChildren();
    if (!key) {
      status.append(alertBox("Enter an API key."));
      return;
    }
    state.key = key;
    try {
      state.me = await api("/v1/me");
    } catch (err) {
      state.key = null;
      state.me = null;
      const why = err instanceof ApiFailure && err.status === 401 ? "That API key was not accepted." : "";
      status.append(alertBox(`${why} ${err.message}`.trim()));
      return;
    }
    sessionStorage.setItem(KEY_STORE, key);
    renderNav();
    if (!location.hash || location.hash === "#") location.hash = "#playground";
    else route();
  }

  function signOut(message) {
    sessionStorage.removeItem(KEY_STORE);
    state.key = null;
    state.me = null;
    state.chat = [];
    state.requestFilters = null;
    abortView();
    renderSignIn(message);
  }

  // --- navigation -------------------------------------------------------------------------------

  const PAGES = [
    { hash: "#playground", label: "Playground" },
    { hash: "#keys", label: "Keys", admin: true },
    { hash: "#usage", label: "Usage" },
    { hash: "#requests", label: "Requests" },
    { hash: "#collections", label: "Collections" },
  ];

  function renderNav() {
    const admin = state.me.role === "admin";
    const links = PAGES.filter((p) => admin || !p.admin).map((p) =>
      el("a", { href: p.hash, onclick: closeMenu }, p.label),
    );
    const out = el("button", { type: "button", onclick: () => signOut("Signed out.") }, "Sign out");
    nav.replaceChildren(...links, out);
    nav.hidden = false;
    menuToggle.hidden = false;
    const me = state.me;
    who.textContent = `${me.key_name || me.key_id} · ${me.org_id} · ${me.role}`;
  }

  function closeMenu() {
    nav.classList.remove("open");
    menuToggle.setAttribute("aria-expanded", "false");
  }

  menuToggle.addEventListener("click", () => {
    const open = nav.classList.toggle("open");
    menuToggle.setAttribute("aria-expanded", String(open));
  });

  function abortView() {
    if (state.view) state.view.abort();
    state.view = null;
  }

  const VIEWS = {
    playground: renderPlayground,
    keys: renderKeys,
    usage: renderUsage,
    requests: renderRequests,
    collections: renderCollections,
  };

  function route() {
    if (!state.me) {
      renderSignIn();
      return;
    }
    abortView();
    const view = new AbortController();
    state.view = view;
    const hash = location.hash.slice(1) || "playground";
    const [page, ...rest] = hash.split("/");
    for (const a of nav.querySelectorAll("a")) {
      if (a.getAttribute("href") === "#" + page) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    const section = el("section", { "data-page": page });
    main.replaceChildren(section);
    const render = VIEWS[page];
    if (!render) {
      section.append(el("h1", {}, "Not found"), el("p", {}, "No such page. "), el("a", { href: "#playground" }, "Go to the playground"));
      return;
    }
    const id = rest.length ? decodeURIComponent(rest.join("/")) : null;
    Promise.resolve(page === "requests" && id ? renderRequest(section, id, view.signal) : render(section, view.signal)).catch((err) => {
      if (err.name === "AbortError" || view.signal.aborted) return;
      section.append(alertBox(err.message || String(err)));
    });
    main.focus({ preventScroll: true });
  }

  window.addEventListener("hashchange", route);

  // --- playground -------------------------------------------------------------------------------

  async function renderPlayground(section, signal) {
    const model = el("select", { name: "model", required: true });
    const system = el("textarea", { name: "system", rows: 2, placeholder: "You are a helpful assistant." });
    const useRetrieval = el("input", { type: "checkbox", name: "retrieval" });
    const collection = el("select", { name: "collection", disabled: true });
    const message = el("textarea", { name: "message", rows: 3, required: true, placeholder: "Ask a question; Ctrl+Enter sends" });
    message.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        form.requestSubmit();
      }
    });
    const sendButton = el("button", { type: "submit", class: "primary" }, "Send");
    const stop = el("button", { type: "button", disabled: true }, "Stop");
    const clear = el("button", { type: "button" }, "New conversation");
    const transcript = el("div", { class: "transcript", "aria-live": "polite" });
    const status = el("div", {});
    useRetrieval.addEventListener("change", () => { collection.disabled = !useRetrieval.checked; });

    let streaming = null;
    stop.addEventListener("click", () => streaming && streaming.abort());
    clear.addEventListener("click", () => {
      state.chat = [];
      transcript.replaceChildren();
    });
    const form = el(
      "form",
      {
        class: "playground",
        onsubmit: async (e) => {
          e.preventDefault();
          const text = message.value;
          if (!text.trim() || streaming) return;
          streaming = new AbortController();
          signal.addEventListener("abort", () => streaming && streaming.abort(), { once: true });
          sendButton.disabled = true;
          stop.disabled = false;
          message.value = "";
          try {
            await chatTurn(transcript, {
              model: model.value,
              system: system.value.trim(),
              text,
              collection: useRetrieval.checked ? collection.value : "",
            }, streaming.signal);
          } finally {
            streaming = null;
            sendButton.disabled = false;
            stop.disabled = true;
          }
        },
      },
      el("div", { class: "conversation" }, transcript, field("Message", message),
        el("div", { class: "buttons" }, sendButton, stop, clear), status),
      el("aside", { class: "side" }, field("Model", model), field("System prompt", system),
        el("label", { class: "check" }, useRetrieval, el("span", {}, "Use retrieval")), field("Collection", collection)),
    );
    section.append(el("h1", {}, "Playground"), form);
    for (const turn of state.chat) transcript.append(messageNode(turn.role, turn.content));

    const [models, collections] = await Promise.allSettled([api("/v1/models", { signal }), api("/v1/collections", { signal })]);
    if (models.status === "fulfilled") {
      for (const m of models.value.data) model.append(el("option", { value: m.id }, m.id));
    } else {
      status.append(alertBox("Could not list models: " + models.reason.message));
    }
    if (collections.status === "fulfilled") {
      for (const c of collections.value.data) collection.append(el("option", { value: c.name }, c.name));
    }
    if (!collection.options.length) {
      useRetrieval.disabled = true;
      collection.append(el("option", { value: "" }, "no collections"));
    } else if (!state.chat.length) {
      // With documents to answer from, a first question is grounded on them unless unticked.
      useRetrieval.checked = true;
      collection.disabled = false;
    }
  }

  function messageNode(role, content) {
    return el("div", { class: `message ${role}` }, el("span", { class: "role" }, role), el("div", { class: "message-text" }, content));
  }

  async function chatTurn(transcript, turn, signal) {
    const userNode = messageNode("user", turn.text);
    const answerText = el("div", { class: "message-text" });
    const meta = el("div", { class: "message-meta" });
    const answer = el("div", { class: "message assistant", "data-state": "streaming" }, el("span", { class: "role" }, "assistant"), answerText, meta);
    transcript.append(userNode, answer);
    const messages = [];
    if (turn.system) messages.push({ role: "system", content: turn.system });
    messages.push(...state.chat, { role: "user", content: turn.text });
    const body = { model: turn.model, messages, stream: true, stream_options: { include_usage: true } };
    if (turn.collection) body.retrieval = { collection: turn.collection };
    try {
      const resp = await send("/v1/chat/completions", { body, signal });
      showResponseMeta(meta, resp.headers);
      const result = await readStream(resp, (delta) => answerText.append(delta));
      answer.dataset.state = "done";
      state.chat.push({ role: "user", content: turn.text }, { role: "assistant", content: answerText.textContent });
      showResult(answer, meta, result);
    } catch (err) {
      answer.dataset.state = err.name === "AbortError" ? "stopped" : "error";
      answer.append(alertBox(err.name === "AbortError" ? "Stopped." : err.message));
    }
  }

  // Reads an OpenAI-style SSE stream, calling onDelta with each piece of answer text as it arrives.
  async function readStream(resp, onDelta) {
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    const result = { citations: null, usage: null, finish: "" };
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data:")) continue;
          const data = line.slice(5).trim();
          if (data === "[DONE]") return result;
          const chunk = JSON.parse(data);
          if (chunk.error) throw new ApiFailure(0, chunk.error.message || "the stream failed");
          if (chunk.citations) result.citations = chunk.citations;
          if (chunk.usage) result.usage = chunk.usage;
          for (const choice of chunk.choices || []) {
            if (choice.delta && choice.delta.content) onDelta(choice.delta.content);
            if (choice.finish_reason) result.finish = choice.finish_reason;
          }
        }
      }
      if (done) return result;
    }
  }

  function metaField(name, label, value) {
    return el("span", { "data-field": name }, el("span", { class: "muted" }, label + " "), value);
  }

  function showResponseMeta(meta, h) {
    meta.append(metaField("request-id", "request", h.get("x-request-id") || ""));
    const guardrails = h.get("x-guardrails");
    if (guardrails) meta.append(metaField("guardrails", "guardrails", guardrails));
    const timing = h.get("server-timing");
    if (timing) meta.append(metaField("server-timing", "timing", serverTiming(timing)));
    const trace = (h.get("traceresponse") || "").split("-")[1];
    if (traceUrl && trace) {
      const href = traceUrl.replace("{trace_id}", encodeURIComponent(trace));
      if (/^https?:\/\//i.test(href)) meta.append(el("a", { href, target: "_blank", rel: "noopener noreferrer", "data-field": "trace" }, "trace"));
    }
  }

  // "auth;dur=0.01;desc=..., generation;dur=12.3" -> "auth 0.01 ms, generation 12.3 ms"
  function serverTiming(value) {
    return value.split(",").map((part) => {
      const [name, ...params] = part.trim().split(";");
      const dur = params.find((p) => p.trim().startsWith("dur="));
      return dur ? `${name} ${dur.trim().slice(4)} ms` : name;
    }).join(", ");
  }

  function showResult(answer, meta, result) {
    if (result.usage) {
      meta.append(metaField("tokens", "tokens", `${result.usage.prompt_tokens} in, ${result.usage.completion_tokens} out`));
    }
    if (result.finish) meta.append(metaField("finish-reason", "finish", result.finish));
    if (result.citations) answer.append(citationList(result.citations));
  }

  function citationList(citations) {
    const items = citations.map((c) => el("li", {}, el("span", { class: "source" }, c.source_id), " ",
      el("span", { class: "muted" }, `chunk ${c.chunk_id}, score ${Number(c.score).toFixed(3)}`)));
    return el("div", {}, el("h3", {}, `Sources (${citations.length})`), el("ol", { class: "citations" }, items));
  }

  // --- keys -------------------------------------------------------------------------------------

  async function renderKeys(section, signal) {
    section.append(el("h1", {}, "API keys"));
    if (state.me.role !== "admin") {
      section.append(alertBox("Only admin keys can manage keys. This key is a member key."));
      return;
    }
    const name = el("input", { name: "name", maxlength: 200, required: true });
    const role = el("select", { name: "role" }, el("option", { value: "member" }, "member"), el("option", { value: "admin" }, "admin"));
    const rpm = el("input", { name: "rpm", type: "number", min: 0, step: 1 });
    const tpm = el("input", { name: "tpm", type: "number", min: 0, step: 1 });
    const budget = el("input", { name: "budget_usd", type: "number", min: 0, step: "0.01" });
    const models = el("input", { name: "allowed_models", placeholder: "all models" });
    const created = el("div", {});
    const list = el("div", {});
    const reload = () => loadKeys(list, signal).catch((err) => list.replaceChildren(alertBox(err.message)));
    const form = actionForm(created, async () => {
      const settings = {};
      if (rpm.value !== "") settings.rpm = Number(rpm.value);
      if (tpm.value !== "") settings.tpm = Number(tpm.value);
      if (budget.value !== "") settings.budget_usd = Number(budget.value);
      const allowed = models.value.split(",").map((m) => m.trim()).filter(Boolean);
      if (allowed.length) settings.allowed_models = allowed;
      try {
        const key = await api("/v1/admin/keys", { body: { name: name.value, role: role.value, settings }, signal });
        form.reset();
        return newKeyNotice(key);
      } finally {
        await reload();
      }
    },
      el("h2", {}, "Create a key"),
      field("Name", name), field("Role", role), field("Requests per minute", rpm), field("Tokens per minute", tpm),
      field("Budget (USD)", budget), field("Allowed models", models),
      el("button", { type: "submit", class: "primary" }, "Create key"),
    );
    section.append(form, created, list);
    await reload();
  }

  function newKeyNotice(key) {
    const secret = el("code", { id: "new-key-secret" }, key.key);
    const copied = el("span", { role: "status" });
    const copy = el("button", {
      type: "button",
      onclick: async () => {
        try {
          await navigator.clipboard.writeText(key.key);
          copied.textContent = "Copied.";
        } catch (_) {
          getSelection().selectAllChildren(secret);
          copied.textContent = "Selected: press Ctrl+C to copy.";
        }
      },
    }, "Copy");
    return el("div", { class: "status new-key" },
      el("p", {}, `Key “${key.name || key.id}” created. Copy it now: it is shown once and cannot be read again.`),
      el("p", {}, secret, " ", copy, " ", copied));
  }

  async function loadKeys(list, signal) {
    const keys = (await api("/v1/admin/keys", { signal })).data;
    const rows = keys.map((k) => {
      const s = k.settings || {};
      const limits = [
        s.rpm !== undefined ? `${s.rpm} rpm` : "",
        s.tpm !== undefined ? `${s.tpm} tpm` : "",
        s.budget_usd !== undefined ? `$${s.budget_usd} a month` : "",
        s.allowed_models ? `models: ${s.allowed_models.join(", ")}` : "",
      ].filter(Boolean).join("; ");
      const label = k.name || k.id;
      let action = "";
      if (k.id === state.me.key_id) action = el("span", { class: "muted" }, "this key");
      else if (!k.revoked_at) {
        action = el("button", { type: "button", "aria-label": `Revoke ${label}`, onclick: async (e) => {
          e.target.disabled = true;
          try {
            await api(`/v1/admin/keys/${encodeURIComponent(k.id)}`, { method: "DELETE", signal });
          } catch (err) {
            list.prepend(alertBox(err.message));
          }
          await loadKeys(list, signal);
        } }, "Revoke");
      }
      return el("tr", { "data-key-id": k.id },
        cell(label), cell(el("code", {}, k.id)), cell(k.role), cell(limits || "org defaults"),
        cell(fmtTime(k.created_at)), cell(k.revoked_at ? "revoked" : "active"), cell(action));
    });
    list.replaceChildren(table("API keys", ["Name", "ID", "Role", "Limits", "Created", "Status", ""], rows));
  }

  // --- usage ------------------------------------------------------------------------------------

  async function renderUsage(section, signal) {
    const today = new Date();
    const from = el("input", { type: "date", name: "since", value: isoDate(new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), 1))) });
    const to = el("input", { type: "date", name: "until", value: isoDate(today) });
    const out = el("div", {});
    const show = () => loadUsage(out, from.value, to.value, signal).catch((err) => {
      if (!signal.aborted) out.replaceChildren(alertBox(err.message));
    });
    section.append(
      el("h1", {}, "Usage"),
      el("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); show(); } },
        field("From", from), field("To", to), el("button", { type: "submit", class: "primary" }, "Show")),
      out,
    );
    await show();
  }

  async function loadUsage(out, since, until, signal) {
    const body = await api("/v1/usage" + query({ since, until, group_by: "day" }), { signal });
    const rows = body.data;
    const days = daysBetween(since, until);
    const sum = (pick) => {
      const per = new Map(days.map((d) => [d, 0]));
      for (const r of rows) per.set(r.day, (per.get(r.day) || 0) + pick(r));
      return [...per.entries()];
    };
    const charts = el("div", { class: "charts" },
      chart("requests", "Requests", sum((r) => r.requests + r.failed_requests), (v) => fmtNum(v)),
      chart("tokens", "Tokens", sum((r) => r.prompt_tokens + r.completion_tokens), (v) => fmtNum(v)),
      chart("cost", "Cost (USD)", sum((r) => r.cost_usd), fmtUsd));
    out.replaceChildren(spendSummary(body.spend_this_month_usd), charts,
      breakdown("Usage per key", "Key", rows, (r) => r.key_id),
      breakdown("Usage per model", "Model", rows, (r) => r.model || "(none)"));
  }

  function daysBetween(since, until) {
    const days = [];
    const end = new Date(until + "T00:00:00Z");
    for (let d = new Date(since + "T00:00:00Z"); d <= end && days.length < 366; d.setUTCDate(d.getUTCDate() + 1)) {
      days.push(isoDate(d));
    }
    return days;
  }

  function spendSummary(spend) {
    const limits = state.me.limits || {};
    const budget = limits.budget_usd;
    const keySpend = spend ? spend.key : null;
    const line = budget ? `${fmtUsd(keySpend)} of the key's ${fmtUsd(budget)} budget` : `${fmtUsd(keySpend)} (no budget on this key)`;
    return el("dl", { class: "fields spend" },
      el("dt", {}, "This key, this month"), el("dd", { "data-field": "key-spend" }, line),
      el("dt", {}, "Organization, this month"), el("dd", { "data-field": "org-spend" }, fmtUsd(spend ? spend.org : null)));
  }

  // A bar per day; the numbers are in each bar's title and in the caption (the chart is a picture
  // of them, not the only place they are).
  function chart(metric, label, points, fmt) {
    const total = points.reduce((acc, [, v]) => acc + v, 0);
    const max = Math.max(...points.map(([, v]) => v), 0) || 1;
    const width = Math.max(points.length, 1) * 14;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "chart");
    svg.setAttribute("viewBox", `0 0 ${width} 100`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `${label} per day`);
    points.forEach(([day, value], i) => {
      const h = (value / max) * 96;
      const bar = document.createElementNS(SVG, "rect");
      bar.setAttribute("class", "bar");
      bar.setAttribute("x", String(i * 14 + 2));
      bar.setAttribute("y", String(100 - h));
      bar.setAttribute("width", "10");
      bar.setAttribute("height", String(Math.max(h, value > 0 ? 1 : 0)));
      const title = document.createElementNS(SVG, "title");
      title.textContent = `${day}: ${fmt(value)}`;
      bar.append(title);
      svg.append(bar);
    });
    return el("figure", { "data-metric": metric, "data-total": String(Math.round(total * 1e8) / 1e8) },
      el("figcaption", {}, `${label}: ${fmt(total)} in all`), svg);
  }

  function breakdown(caption, label, rows, keyOf) {
    const groups = new Map();
    for (const r of rows) {
      const g = groups.get(keyOf(r)) || { requests: 0, failed: 0, prompt: 0, completion: 0, cost: 0 };
      g.requests += r.requests;
      g.failed += r.failed_requests;
      g.prompt += r.prompt_tokens;
      g.completion += r.completion_tokens;
      g.cost += r.cost_usd;
      groups.set(keyOf(r), g);
    }
    const body = [...groups.entries()].sort((a, b) => b[1].cost - a[1].cost || b[1].requests - a[1].requests).map(([k, g]) =>
      el("tr", {}, cell(k), cell(fmtNum(g.requests), true), cell(fmtNum(g.failed), true), cell(fmtNum(g.prompt), true),
        cell(fmtNum(g.completion), true), cell(fmtUsd(g.cost), true)));
    const num = (l) => ({ label: l, num: true });
    return table(caption, [label, num("Requests"), num("Failed"), num("Prompt tokens"), num("Completion tokens"), num("Cost")], body);
  }

  // --- request log ------------------------------------------------------------------------------

  const FILTERS = [
    { name: "since", label: "From", type: "date" },
    { name: "until", label: "To", type: "date" },
    { name: "key_id", label: "Key" },
    { name: "model", label: "Model" },
    { name: "status", label: "Status", options: ["", "2xx", "4xx", "5xx", "error"] },
    { name: "finish_reason", label: "Finish reason", options: ["", "stop", "length", "content_filter", "tool_calls"] },
    { name: "verdict", label: "Guardrail verdict", options: ["", "allow", "redact", "flag", "block"] },
  ];

  async function renderRequests(section, signal) {
    const values = state.requestFilters || {};
    const controls = {};
    const fields = FILTERS.map((f) => {
      const control = f.options
        ? el("select", { name: f.name }, f.options.map((o) => el("option", { value: o }, o || "any")))
        : el("input", { name: f.name, type: f.type || "text" });
      control.value = values[f.name] || "";
      controls[f.name] = control;
      return field(f.label, control);
    });
    const out = el("div", {});
    const search = () => {
      state.requestFilters = Object.fromEntries(Object.entries(controls).map(([k, c]) => [k, c.value]));
      return loadRequests(out, state.requestFilters, signal).catch((err) => {
        if (!signal.aborted) out.replaceChildren(alertBox(err.message));
      });
    };
    section.append(
      el("h1", {}, "Requests"),
      el("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); search(); } }, fields,
        el("button", { type: "submit", class: "primary" }, "Search")),
      out,
    );
    await search();
  }

  async function loadRequests(out, filters, signal) {
    const body = el("tbody", {});
    const more = el("button", { type: "button", hidden: true }, "Load more");
    const headers = ["Time", "Request", "Key", "Model", "Status", "Finish", { label: "Latency (ms)", num: true },
      { label: "Tokens", num: true }, { label: "Cost", num: true }, "Guardrails"];
    const wrap = table("Requests", headers, []);
    wrap.querySelector("table").replaceChild(body, wrap.querySelector("tbody"));
    out.replaceChildren(wrap, more);
    let cursor = null;
    const page = async () => {
      const res = await api("/v1/requests" + query({ ...filters, limit: 50, cursor }), { signal });
      for (const r of res.data) body.append(requestRow(r));
      if (!body.children.length) body.append(el("tr", {}, el("td", { colspan: headers.length, class: "muted" }, "No requests match.")));
      cursor = res.next_cursor;
      more.hidden = !res.has_more;
    };
    more.addEventListener("click", () => page().catch((err) => out.append(alertBox(err.message))));
    await page();
  }

  function verdicts(r) {
    return [r.input_verdict && `in: ${r.input_verdict}`, r.output_verdict && `out: ${r.output_verdict}`].filter(Boolean).join(", ");
  }

  function requestRow(r) {
    return el("tr", {},
      cell(fmtTime(r.created_at)),
      cell(el("a", { href: "#requests/" + encodeURIComponent(r.id) }, r.id)),
      cell(r.key_id), cell(r.model), cell(String(r.status)), cell(r.finish_reason || r.error_code || ""),
      cell(fmtNum(r.latency_ms, 1), true), cell(fmtNum(r.prompt_tokens + r.completion_tokens), true),
      cell(fmtUsd(r.cost_usd), true), cell(verdicts(r)));
  }

  async function renderRequest(section, id, signal) {
    section.append(el("p", {}, el("a", { href: "#requests" }, "← All requests")), el("h1", {}, "Request ", el("code", {}, id)));
    const r = await api("/v1/requests/" + encodeURIComponent(id), { signal });
    const item = (name, label, value) => [el("dt", {}, label), el("dd", { "data-field": name }, value === null || value === undefined ? "" : String(value))];
    section.append(el("dl", { class: "fields" },
      item("created_at", "Time", fmtTime(r.created_at)),
      item("key_id", "Key", r.key_id),
      item("model", "Model", r.model),
      item("route", "Route", r.route + (r.stream ? " (stream)" : "")),
      item("status", "Status", r.status + (r.error_code ? ` ${r.error_code}` : "")),
      item("finish_reason", "Finish reason", r.finish_reason),
      item("latency_ms", "Latency (ms)", r.latency_ms),
      item("ttft_ms", "Time to first token (ms)", r.ttft_ms),
      item("tokens", "Tokens", `${r.prompt_tokens} prompt, ${r.completion_tokens} completion`),
      item("cost_usd", "Cost", fmtUsd(r.cost_usd)),
      item("input_verdict", "Input guardrails", [r.input_verdict, ...(r.input_codes || [])].filter(Boolean).join(" ")),
      item("output_verdict", "Output guardrails", [r.output_verdict, ...(r.output_codes || [])].filter(Boolean).join(" ")),
      item("log_policy", "Log policy", r.log_policy)));
    if (r.summary) section.append(el("h2", {}, "Summary"), el("pre", { class: "text" }, r.summary));
    if (r.conversation) {
      const turns = (r.conversation.messages || []).map((m) => messageNode(m.role, m.content));
      turns.push(messageNode("assistant", r.conversation.answer || ""));
      section.append(el("h2", {}, "Conversation"), el("div", { class: "transcript" }, turns));
    } else {
      section.append(el("p", { class: "muted" }, `The conversation is not kept under the ${r.log_policy} log policy.`));
    }
    if (r.citations && r.citations.length) section.append(citationList(r.citations));
  }

  // --- collections ------------------------------------------------------------------------------

  async function renderCollections(section, signal) {
    const list = el("div", {});
    const names = el("datalist", { id: "collection-names" });
    const collection = el("input", { name: "collection", list: "collection-names", required: true, pattern: "[A-Za-z0-9._-]{1,128}" });
    const file = el("input", { type: "file", name: "file", required: true });
    const progress = el("progress", { "aria-label": "Upload progress", max: 100, value: 0, hidden: true });
    const uploadStatus = el("div", { role: "status" });
    const reload = () => loadCollections(list, names, signal).catch((err) => list.replaceChildren(alertBox(err.message)));
    const upload = actionForm(uploadStatus, async () => {
      try {
        const done = await uploadFile(collection.value, file.files[0], progress, signal);
        file.value = "";
        return ingestReport(done);
      } finally {
        await reload();
      }
    }, el("h2", {}, "Add a document"), field("Collection", collection), field("File", file),
    el("button", { type: "submit", class: "primary" }, "Upload"), progress);

    const q = el("input", { name: "query", type: "search", required: true });
    const results = el("div", {});
    const searchForm = actionForm(results, async () => {
      const res = await api(`/v1/collections/${encodeURIComponent(collection.value)}/search`, { body: { query: q.value, k: 5 }, signal });
      return searchResults(res.data);
    }, el("h2", {}, "Search"), field("Search query", q), el("button", { type: "submit" }, "Search"));
    section.append(el("h1", {}, "Collections"), list, names, upload, uploadStatus, searchForm, results);
    await reload();
  }

  async function loadCollections(list, names, signal) {
    const data = (await api("/v1/collections", { signal })).data;
    names.replaceChildren(...data.map((c) => el("option", { value: c.name })));
    const rows = data.map((c) => el("tr", {}, cell(c.name), cell(c.description || ""), cell(fmtNum(c.documents), true),
      cell(fmtNum(c.chunks), true), cell(c.created_at ? fmtTime(c.created_at) : "")));
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 5, class: "muted" }, "No collections yet: add a document below.")));
    list.replaceChildren(table("Collections", ["Name", "Description", { label: "Documents", num: true }, { label: "Chunks", num: true }, "Created"], rows));
  }

  const TEXT_TYPES = /^(text\/|application\/(json|xml))/;
  const TEXT_NAMES = /\.(txt|md|markdown|csv|json|xml|rst|log)$/i;

  async function documentOf(file) {
    if (TEXT_TYPES.test(file.type) && file.type !== "text/html" || TEXT_NAMES.test(file.name)) {
      return { id: file.name, text: await file.text() };
    }
    const bytes = new Uint8Array(await file.arrayBuffer());
    let binary = "";
    for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return { id: file.name, data: btoa(binary), content_type: file.type || "application/octet-stream" };
  }

  // XHR rather than fetch: only XHR reports upload progress.
  async function uploadFile(name, file, progress, signal) {
    if (!file) throw new Error("Choose a file.");
    await api("/v1/collections", { body: { name }, signal });
    const body = JSON.stringify({ documents: [await documentOf(file)] });
    progress.hidden = false;
    progress.value = 0;
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", `/v1/collections/${encodeURIComponent(name)}/documents`);
      for (const [k, v] of Object.entries(headers(true))) xhr.setRequestHeader(k, v);
      xhr.upload.addEventListener("progress", (e) => { if (e.lengthComputable) progress.value = (100 * e.loaded) / e.total; });
      xhr.addEventListener("load", () => {
        progress.value = 100;
        let parsed = null;
        try { parsed = JSON.parse(xhr.responseText); } catch (_) { /* reported below */ }
        if (xhr.status >= 200 && xhr.status < 300 && parsed) resolve(parsed);
        else reject(new ApiFailure(xhr.status, (parsed && parsed.error && parsed.error.message) || `upload failed (${xhr.status})`));
      });
      xhr.addEventListener("error", () => reject(new Error("the upload failed: the gateway could not be reached")));
      xhr.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError")));
      signal.addEventListener("abort", () => xhr.abort(), { once: true });
      xhr.send(body);
    });
  }

  function ingestReport(res) {
    const items = res.data.map((d) => el("li", {}, `${d.id || d.source_id || ""}: ${d.status}`, d.error ? ` (${d.error.message || d.error})` : "", d.chunks ? `, ${d.chunks} chunks` : ""));
    const line = `${res.documents} document(s) added, ${res.failed} failed, ${res.chunks} chunks.`;
    return el("div", {}, el("p", {}, line), el("ul", {}, items));
  }

  function searchResults(chunks) {
    if (!chunks.length) return el("p", { class: "muted" }, "Nothing found.");
    return el("ol", { class: "search-results" }, chunks.map((c) => el("li", {},
      el("strong", {}, c.source_id), " ", el("span", { class: "muted" }, `score ${Number(c.score).toFixed(3)}`),
      el("pre", { class: "text" }, c.text))));
  }

  // --- start ------------------------------------------------------------------------------------

  const saved = sessionStorage.getItem(KEY_STORE);
  if (saved) {
    const status = el("div", {});
    main.replaceChildren(status);
    signIn(saved, status).then(() => { if (!state.me) renderSignIn("The saved key was not accepted; sign in again."); });
  } else {
    renderSignIn();
  }
})();
