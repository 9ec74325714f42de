// The plan page: slice sliders, the RT Dose checkboxes, server choice, C-ECHO, export jobs with progress.
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (sel, root = document) => root.querySelector(sel);

  // Colour swatches (legends, DVH table): set here, since the Content-Security-Policy allows no inline style.
  for (const el of document.querySelectorAll("[data-swatch]")) el.style.background = el.dataset.swatch;
  for (const el of document.querySelectorAll("[data-outline]")) el.style.borderColor = el.dataset.outline;

  // Slice sliders: load the next picture once the previous one has arrived (no request pile-up).
  for (const fig of document.querySelectorAll("figure.view")) {
    const img = $("img", fig), range = $("input[type=range]", fig), pos = $("[data-role=pos]", fig);
    let loading = false, wanted = null;
    const show = () => {
      if (loading || wanted === null) return;
      loading = true;
      img.src = img.dataset.base + wanted + ".png";
      wanted = null;
    };
    // The dose under the pointer: the slice's dose grid (cGy every few pixels) fetched with each slice.
    const readout = $("[data-role=readout]", fig);
    let info = null, infoFor = null;
    const loadInfo = async (index) => {
      if (infoFor === index) return;
      infoFor = index;
      const rsp = await fetch(img.dataset.base + index + ".json", { headers: { Accept: "application/json" } });
      if (rsp.ok && infoFor === index) info = await rsp.json();
    };
    const current = () => Number(range.value);
    img.addEventListener("pointermove", (e) => {
      if (!info || info.index !== current()) { loadInfo(current()); return; }
      const box = img.getBoundingClientRect(), [w, h] = info.size;
      const scale = Math.min(box.width / w, box.height / h);
      const col = (e.clientX - box.left - (box.width - w * scale) / 2) / scale;
      const row = (e.clientY - box.top - (box.height - h * scale) / 2) / scale;
      if (col < 0 || row < 0 || col >= w || row >= h) { readout.textContent = ""; return; }
      const hmm = info.origin[0] + (col + 0.5) * info.step_mm[0], vmm = info.origin[1] + (row + 0.5) * info.step_mm[1];
      let text = `${info.axes[0]} ${hmm.toFixed(1)} mm, ${info.axes[1]} ${vmm.toFixed(1)} mm · ${info.plane}`;
      const grid = info.dose_cgy, k = info.dose_step_px;
      if (grid.length) {
        const r = Math.min(grid.length - 1, Math.floor(row / k)), c = Math.min(grid[0].length - 1, Math.floor(col / k));
        const gy = grid[r][c] / 100;
        text += ` · dose ${gy.toFixed(2)} Gy (${Math.round((100 * gy) / info.prescription_gy)} %)`;
      }
      readout.textContent = text;
    });
    img.addEventListener("pointerleave", () => { readout.textContent = ""; });
    img.addEventListener("load", () => { loading = false; show(); });
    img.addEventListener("error", () => { loading = false; show(); });
    range.addEventListener("input", () => {
      pos.textContent = (Number(range.value) + 1) + " / " + (Number(range.max) + 1);
      wanted = range.value;
      show();
      loadInfo(current());
    });
    loadInfo(current());
  }

  // Folding sections (Export, Plan Reports, DICOM): each user's choice kept in this browser.
  const user = (document.querySelector('meta[name="user"]') || {}).content || "";
  const foldKey = "rtexport.fold." + user;
  let folds = {};
  try { folds = JSON.parse(localStorage.getItem(foldKey) || "{}"); } catch (e) { folds = {}; }
  for (const d of document.querySelectorAll("details[data-fold]")) {
    const name = d.dataset.fold;
    if (name in folds && !d.querySelector(".form-message:not([hidden])")) d.open = Boolean(folds[name]);
    d.addEventListener("toggle", () => {
      folds[name] = d.open;
      try { localStorage.setItem(foldKey, JSON.stringify(folds)); } catch (e) { /* storage off: folds not kept */ }
    });
  }

  const section = $("#export");
  if (!section) return;
  const plan = section.dataset.plan;

  // Plan reports: make one, add it to the list, download it; a refusal is shown next to the button.
  const reportForm = $("#report-form");
  reportForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const button = $("#make-report"), msg = $("#reports-message");
    button.disabled = true;
    msg.hidden = false; msg.className = "form-message"; msg.textContent = "Making the report…";
    try {
      const rsp = await fetch(reportForm.action, { method: "POST", body: new FormData(reportForm), headers: { "X-CSRF-Token": csrf, Accept: "application/json" } });
      let body = {};
      try { body = await rsp.json(); } catch (err) { body = { error: rsp.status + " " + rsp.statusText }; }
      if (rsp.status !== 201) { msg.className = "form-message error"; msg.textContent = body.error || body.detail || "refused"; return; }
      msg.className = "form-message ok";
      msg.textContent = `Report ${body.id} made (${Math.round(body.size / 1000)} kB); downloading ${body.filename}.`;
      const list = $("#reports-list"), none = $("#no-reports");
      list.hidden = false; if (none) none.remove();
      const row = document.createElement("tr");
      const cells = [`Report ${body.id}`, body.made_at, body.made_by, String(body.revision), body.approved ? "approved" : "unapproved", `${Math.round(body.size / 1000)} kB`];
      cells.forEach((text, i) => {
        const td = document.createElement("td");
        if (i === 0) { const a = document.createElement("a"); a.href = body.url; a.textContent = text; td.append(a); } else { td.textContent = text; }
        row.append(td);
      });
      $("tbody", list).prepend(row);
      const a = document.createElement("a");
      a.href = body.url; a.download = body.filename; document.body.append(a); a.click(); a.remove();
    } finally {
      button.disabled = false;
    }
  });

  // RT Dose: the parent box ticks both Plan and Beam; it shows ticked while either is.
  const parent = $("#rtdose"), children = [...document.querySelectorAll(".dose-child")];
  parent.addEventListener("change", () => children.forEach((c) => { c.checked = parent.checked; }));
  children.forEach((c) => c.addEventListener("change", () => {
    parent.checked = children.some((x) => x.checked);
    parent.indeterminate = parent.checked && !children.every((x) => x.checked);
  }));

  // Server choice: show the chosen server's name, host and port, or the fields of a custom one.
  const server = $("#server"), info = $("#server-info"), custom = $("#custom");
  const showServer = () => {
    const opt = server.selectedOptions[0] || { value: "", dataset: {} };  // none: no server this user may use
    const isCustom = opt.value === "custom";
    custom.hidden = !isCustom;
    info.hidden = isCustom;
    for (const f of ["aet", "name", "host", "port"]) $(`[data-field=${f}]`, info).textContent = opt.dataset[f] || "—";
  };
  // A new destination forgets what the last one answered (a failure of another server is not this one's).
  const forget = () => {
    const out = $("#echo-result");
    out.textContent = ""; out.className = "hint";
    for (const el of document.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    const progress = $("#progress");
    if (progress && !progress.dataset.running) progress.hidden = true;
  };
  server.addEventListener("change", () => { showServer(); forget(); });
  for (const el of document.querySelectorAll("#custom input, #folder")) el.addEventListener("input", forget);
  showServer();
  const markFields = (fields) => {
    for (const f of fields || []) {
      const input = $(`#custom input[name=${f}]`);
      if (input) input.setAttribute("aria-invalid", "true");
    }
    const first = $("#custom [aria-invalid]");
    if (first) first.focus();
  };

  const items = () => [...document.querySelectorAll('input[name="items"]:checked')].map((c) => c.value);
  const post = async (url, data) => {
    const rsp = await fetch(url, { method: "POST", body: data, headers: { "X-CSRF-Token": csrf, Accept: "application/json" } });
    let body = {};
    try { body = await rsp.json(); } catch (e) { body = { error: rsp.status + " " + rsp.statusText }; }
    return { status: rsp.status, body };
  };

  $("#echo").addEventListener("click", async () => {
    const out = $("#echo-result");
    out.className = "hint"; out.textContent = "Testing connection (C-ECHO)…";
    const { body } = await post("/echo", new FormData($("#server-form")));
    markFields(body.fields);
    out.className = "hint " + (body.ok ? "good" : "bad");
    out.textContent = body.ok ? "✓ " + body.message : "✗ " + (body.message || body.error);
  });

  const progress = $("#progress"), bar = $("#progress-bar"), tbody = $("#results tbody");
  const buttons = [$("#export-local"), $("#export-server")];
  const esc = (s) => String(s ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
  const goodOutcomes = new Set(["written", "stored", "identical file already there"]);

  const resultText = (r) => `${esc(r.outcome)}${r.status ? " " + esc(r.status) : ""}` +
    `${r.meaning && r.outcome !== "stored" ? " · " + esc(r.meaning) : ""}`;
  const render = (job) => {
    const pct = job.total ? Math.round((100 * job.done) / job.total) : (job.state === "running" ? 3 : 100);
    bar.style.width = pct + "%";
    $("#progress-meter").setAttribute("aria-valuenow", String(pct));
    bar.className = job.state === "failed" || job.ok === false ? "bad" : job.state === "done" ? "good" : "";
    $("#progress-title").textContent = job.state === "running"
      ? (job.phase === "preparing" ? "Preparing the DICOM objects…" : `Exporting to ${job.destination}…`)
      : job.ok ? "Export complete" : "Export failed";
    $("#progress-text").textContent = `${job.done} of ${job.total || "?"} objects · ${job.seconds} s`;
    const msg = $("#progress-message");
    msg.className = "message " + (job.state === "running" ? "" : job.ok ? "good" : "bad");
    msg.innerHTML = esc(job.message).replace(/\n/g, "<br>") +
      (job.findings.length ? "<ul>" + job.findings.map((f) => `<li>${esc(f)}</li>`).join("") + "</ul>" : "") +
      ((job.warnings || []).length ? '<ul class="warnings">' +
        job.warnings.map((w) => `<li class="warnc">Warning: ${esc(w)}</li>`).join("") + "</ul>" : "");
    const notice = $("#progress-notice");
    notice.hidden = !job.notice; notice.textContent = job.notice || "";
    const where = (r) => `<code>${esc(job.kind === "folder" ? r.file : r.uid)}</code>`;
    $("#summary tbody").innerHTML = (job.summary || []).map((r) =>
      `<tr><td>${esc(r.kind)}</td><td>${esc(r.label)}</td><td>${r.kind === "CT" ? "" : where(r)}</td>` +
      `<td class="${r.ok ? "good" : "bad"}">${esc(r.text)}</td></tr>`).join("");
    $("#summary").hidden = !(job.summary || []).length;
    $("#ct-rows").hidden = !job.results.length;
    $("#ct-rows-title").textContent = `Every object (${job.results.length})`;
    tbody.innerHTML = job.results.map((r, i) =>
      `<tr><td>${i + 1}</td><td>${esc(r.kind)}</td><td>${esc(r.description)}</td><td>${where(r)}</td>` +
      `<td class="${goodOutcomes.has(r.outcome) ? "good" : r.outcome === "warning" ? "warnc" : "bad"}">${resultText(r)}</td></tr>`
    ).join("");
  };

  const run = async (url, data) => {
    items().forEach((v) => data.append("items", v));
    buttons.forEach((b) => { b.disabled = true; });
    progress.hidden = false; progress.dataset.running = "1";
    render({ state: "running", phase: "preparing", total: 0, done: 0, results: [], findings: [], message: "", seconds: 0, destination: "" });
    try {
      const { status, body } = await post(url, data);
      if (status !== 202) {
        markFields(body.fields);
        render({ state: "failed", ok: false, total: 0, done: 0, results: [], findings: body.findings || [], message: body.error || body.detail || "refused", seconds: 0 });
        return;
      }
      for (;;) {
        const rsp = await fetch("/jobs/" + body.job, { headers: { Accept: "application/json" } });
        const job = await rsp.json();
        if (!rsp.ok) { render({ state: "failed", ok: false, total: 0, done: 0, results: [], findings: [], message: job.error, seconds: 0 }); return; }
        render(job);
        if (job.state !== "running") return;
        await new Promise((r) => setTimeout(r, 250));
      }
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
      delete progress.dataset.running;
    }
  };

  $("#local-form").addEventListener("submit", (e) => {
    e.preventDefault();
    run(`/plans/${encodeURIComponent(plan)}/export/folder`, new FormData($("#local-form")));
  });
  $("#server-form").addEventListener("submit", (e) => {
    e.preventDefault();
    run(`/plans/${encodeURIComponent(plan)}/export/server`, new FormData($("#server-form")));
  });

  // Browse: a folder picker inside the site's export roots, which can make a new sub-folder.
  const picker = $("#picker"), browse = $("#browse");
  let at = { path: "", parent: null, folders: [] };
  const pickerSay = (text, kind) => { const m = $("#picker-message"); m.textContent = text; m.className = "hint " + (kind || ""); };
  const openFolder = async (path) => {
    const rsp = await fetch("/export-folders?path=" + encodeURIComponent(path), { headers: { Accept: "application/json" } });
    const body = await rsp.json();
    if (!rsp.ok) { pickerSay(body.error || "refused", "bad"); return; }
    at = body;
    $("#picker-path").textContent = at.path || "Export folders of the site";
    $("#picker-up").disabled = at.parent === null;
    $("#picker-make").disabled = !at.path;
    $("#picker-choose").disabled = !at.path;
    const list = $("#picker-list");
    list.innerHTML = "";
    for (const name of at.folders) {
      const li = document.createElement("li"), b = document.createElement("button");
      b.type = "button"; b.className = "link-button"; b.textContent = "📁 " + name.split("/").pop();
      b.setAttribute("aria-label", "Open folder " + name);
      b.addEventListener("click", () => openFolder(at.path ? at.path + "/" + name : name));
      li.append(b); list.append(li);
    }
    if (!at.folders.length) { const li = document.createElement("li"); li.className = "hint"; li.textContent = "No sub-folders."; list.append(li); }
    pickerSay("");
  };
  if (browse) browse.addEventListener("click", async () => {
    const show = picker.hidden;
    picker.hidden = !show; browse.setAttribute("aria-expanded", String(show));
    if (show) {
      const typed = $("#folder").value.trim();
      await openFolder(typed);
      if (typed && !at.path) await openFolder("");
    }
  });
  $("#picker-up").addEventListener("click", () => openFolder(at.parent || ""));
  $("#picker-choose").addEventListener("click", () => {
    $("#folder").value = at.path; forget();
    picker.hidden = true; browse.setAttribute("aria-expanded", "false"); $("#folder").focus();
  });
  $("#picker-make").addEventListener("click", async () => {
    const data = new FormData();
    data.append("parent", at.path); data.append("name", $("#picker-name").value);
    const { status, body } = await post("/export-folders", data);
    if (status !== 201) { pickerSay(body.error || "refused", "bad"); return; }
    $("#picker-name").value = "";
    await openFolder(at.path);
    pickerSay("Made " + body.path, "good");
  });
})();
