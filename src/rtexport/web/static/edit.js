// The Course, Plan, Beams and Dose blocks: the plan as the plan file's keys, saved through the door of
// `plan load`; each problem is shown beside its field. Beam help (setup preview, cutout from a target, energy)
// asks the server and changes nothing stored.
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  const el = (tag, attrs = {}, ...children) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") e.textContent = v; else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  };
  const post = (url, body) => fetch(url, {
    method: "POST", headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": csrf },
    body: JSON.stringify(body),
  });

  // Upload a plan file (courses page): loaded as `plan load FILE` loads it.
  const upload = $("#upload-plan");
  if (upload) upload.addEventListener("submit", async (e) => {
    e.preventDefault();
    const msg = $("#upload-message");
    msg.textContent = "Loading…";
    const rsp = await fetch("/plans/upload", { method: "POST", body: new FormData(upload), headers: { "X-CSRF-Token": csrf, "Accept": "application/json" } });
    const body = await rsp.json();
    if (rsp.ok) { msg.textContent = body.message; window.location = body.url; return; }
    msg.textContent = (body.error || body.detail) + (body.problems ? "\n" + body.problems.map((p) => (p.field ? p.field + ": " : "") + p.message).join("\n") : "");
    msg.className = "form-message error";
  });

  const editor = $("#editor");
  if (!editor) return;
  const planId = editor.dataset.plan;
  let choices = null;
  let approved = false;
  let planExtra = {};

  const say = (text, kind = "ok") => {
    const m = $("#editor-message");
    m.hidden = !text; m.className = "flash " + kind; m.textContent = text;
  };
  const options = (select, values, current, empty) => {
    select.replaceChildren();
    if (empty !== undefined) select.append(el("option", { value: "", text: empty }));
    const all = values.map(String);
    if (current !== undefined && current !== null && current !== "" && !all.includes(String(current))) all.push(String(current));
    for (const v of all) select.append(el("option", { value: v, selected: String(v) === String(current), text: v }));
  };
  const machine = () => (choices.machines.find((m) => m.name === $("#f-machine").value) || { energies: [], applicators: [] });
  const structureNames = () => choices.structures.map((s) => s.name);

  // One field: label, input and the place for its problem (data-for: the plan file key).
  const field = (key, label, input) => {
    const id = "f-" + key.replace(/[^A-Za-z0-9_]+/g, "-");
    input.id = id; input.dataset.key = key;
    return el("div", { class: "field" }, el("label", { for: id, text: label }), input, el("span", { class: "problem", "data-for": key }));
  };
  const num = (value, type = "float", attrs = {}) => el("input", { type: "number", step: "any", value: value ?? "", "data-type": type, ...attrs });
  const select = (values, current, empty) => { const s = el("select"); options(s, values, current, empty); return s; };

  function overrideRow(o, i) {
    const li = el("li", { class: "override" },
      field(`override[${i}].structure`, "Structure", select(structureNames(), o.structure)),
      field(`override[${i}].material`, "Material", select(choices.materials, o.material)),
      el("button", { type: "button", "data-action": "remove-override", "data-index": i, text: "Remove override " + (i + 1) }));
    return li;
  }

  function setupOf(b) { return b.target ? "target" : b.aim_mm ? "aim" : b.isocenter_mm ? "isocenter" : "target"; }
  const point = (key, label, p) => el("fieldset", { class: "point", "data-point": key }, el("legend", { text: label }),
    ...["x", "y", "z"].map((axis, k) => field(`${key}.${axis}`, axis + " (mm)", num(p ? p[k] : ""))),
    el("span", { class: "problem", "data-for": key }));

  function beamCard(b, i) {
    const k = (name) => `beam[${i}].${name}`;
    const m = machine();
    const setup = setupOf(b);
    const cutout = b.cutout_mm ? b.cutout_mm.map((p) => p.join(" ")).join("\n") : "";
    const bolus = b.bolus || null;
    const card = el("section", { class: "beam card", "data-index": i, "aria-label": "Beam " + (i + 1) + " " + (b.name || "") },
      el("h3", { text: "Beam " + (i + 1) + (b.name ? " · " + b.name : "") }),
      el("span", { class: "problem", "data-for": `beam[${i}]` }),
      el("div", { class: "beam-grid" },
        el("div", { class: "fields" },
          field(k("name"), "Name", el("input", { value: b.name ?? "", maxlength: 16, required: true })),
          el("div", { class: "field-with-action" },
            field(k("energy_mev"), "Energy (MeV)", select(m.energies, b.energy_mev, "choose")),
            el("button", { type: "button", "data-action": "suggest-energy", "data-index": i, "aria-label": `Suggest energy for beam ${i + 1}`, text: "Suggest energy" }),
            el("span", { class: "hint suggestion", role: "status", "aria-live": "polite" })),
          field(k("applicator"), "Applicator", select(m.applicators, b.applicator, "choose")),
          field(k("gantry_deg"), "Gantry (°)", num(b.gantry_deg ?? 0, "float", { min: 0, max: 359.9 })),
          field(k("collimator_deg"), "Collimator (°)", num(b.collimator_deg ?? 0, "float", { min: 0, max: 359.9 })),
          field(k("couch_deg"), "Couch (°)", num(b.couch_deg ?? 0, "float", { min: 0, max: 359.9 })),
          field(k("setup"), "Setup", select(["target", "aim", "isocenter"], setup)),
          el("div", { class: "setup-target", hidden: setup !== "target" }, field(k("target"), "Target (SSD on its centroid)", select(structureNames(), b.target, "choose"))),
          el("div", { class: "setup-aim", hidden: setup !== "aim" }, point(k("aim_mm"), "Aim point", b.aim_mm)),
          el("div", { class: "setup-isocenter", hidden: setup !== "isocenter" }, point(k("isocenter_mm"), "Isocenter", b.isocenter_mm)),
          field(k("ssd_mm"), "SSD (mm; empty: the machine's SAD)", num(b.ssd_mm)),
          field(k("weight"), "Weight (empty with MU)", num(b.weight)),
          field(k("mu"), "MU per fraction (empty: from the prescription)", num(b.mu)),
        ),
        el("div", { class: "fields" },
          field(k("cutout_mm"), "Cutout (x y in mm per line, beam's-eye view at the isocenter; empty: open applicator)",
            el("textarea", { rows: 5, text: cutout, "data-type": "polygon" })),
          el("div", { class: "from-target" },
            field(k("cutout_target"), "Cutout from target", select(structureNames(), b.target || "PTV", "choose")),
            field(k("margin_mm"), "Margin (mm)", num(10, "float", { min: 0, max: 100 })),
            el("button", { type: "button", "data-action": "cutout-from-target", "data-index": i, "aria-label": `Make the cutout of beam ${i + 1} from the target`, text: "Make cutout from target" })),
          el("fieldset", { class: "bolus" }, el("legend", { text: "Bolus" }),
            field(k("bolus.on"), "Bolus on this beam", el("input", { type: "checkbox", checked: bolus !== null })),
            field(k("bolus.thickness_mm"), "Thickness (mm)", num(bolus ? bolus.thickness_mm : 10)),
            field(k("bolus.margin_mm"), "Margin (mm)", num(bolus ? bolus.margin_mm : 10)),
            field(k("bolus.material"), "Material", select(choices.materials, bolus ? bolus.material : choices.materials[0])),
            el("span", { class: "problem", "data-for": k("bolus") })),
          el("figure", { class: "bev-preview", "aria-live": "polite" }, el("div", { class: "bev-svg" }), el("figcaption", { class: "bev-facts" })),
        )),
      el("div", { class: "beam-actions" },
        el("button", { type: "button", "data-action": "clone-beam", "data-index": i, text: "Clone beam " + (i + 1) }),
        el("button", { type: "button", "data-action": "delete-beam", "data-index": i, text: "Delete beam " + (i + 1) })));
    return card;
  }

  function render(plan) {
    planExtra = plan.acknowledge && plan.acknowledge.length ? { acknowledge: plan.acknowledge } : {};
    options($("#f-external"), structureNames(), plan.external);
    $("#structures-list").textContent = "Structures: " + choices.structures.map((s) => s.name + (s.type ? " (" + s.type + ")" : "")).join(", ");
    for (const key of ["id", "label", "fractions", "prescription_gy", "dose_grid_mm"]) $("#f-" + key).value = plan[key] ?? "";
    $("#f-id").readOnly = Boolean(planId);
    options($("#f-machine"), choices.machines.map((m) => m.name), plan.machine);
    options($("#f-ct_curve"), choices.ct_curves, plan.ct_curve);
    $("#overrides").replaceChildren(...(plan.override || []).map(overrideRow));
    $("#beam-list").replaceChildren(...(plan.beam || []).map(beamCard));
    for (const card of $$(".beam")) preview(Number(card.dataset.index));
  }

  // The plan file's keys from the form (empty fields left out).
  const value = (input) => {
    const v = input.value.trim();
    if (v === "") return null;
    if (input.dataset.type === "int") return Number.isInteger(Number(v)) ? Number(v) : v;
    if (input.dataset.type === "float") return Number.isFinite(Number(v)) ? Number(v) : v;
    return v;
  };
  const polygon = (text) => {
    const rows = text.split(/\n|;/).map((r) => r.trim()).filter(Boolean);
    return rows.length ? rows.map((r) => r.split(/[\s,]+/).map((x) => (Number.isFinite(Number(x)) ? Number(x) : x))) : null;
  };
  function collectBeam(card) {
    const i = card.dataset.index;
    const get = (name) => $(`[data-key="beam[${i}].${name}"]`, card);
    const b = JSON.parse(card.dataset.extra || "{}");
    for (const name of ["name", "energy_mev", "applicator", "gantry_deg", "collimator_deg", "couch_deg", "ssd_mm", "weight", "mu"]) {
      const v = value(get(name));
      if (v !== null) b[name] = name === "energy_mev" && Number.isFinite(Number(v)) ? Number(v) : v;
    }
    const setup = get("setup").value;
    if (setup === "target") b.target = value(get("target"));
    for (const [kind, key] of [["aim", "aim_mm"], ["isocenter", "isocenter_mm"]]) {
      if (setup === kind) b[key] = ["x", "y", "z"].map((a) => value(get(`${key}.${a}`)));
    }
    const cut = polygon(get("cutout_mm").value);
    if (cut) b.cutout_mm = cut;
    if (get("bolus.on").checked) {
      b.bolus = { thickness_mm: value(get("bolus.thickness_mm")), margin_mm: value(get("bolus.margin_mm")) ?? 0, material: value(get("bolus.material")) };
    }
    return b;
  }
  function collect() {
    const plan = { ...planExtra, course: editor.dataset.course };
    for (const input of $$("#course-block [data-key], #plan-block .fields [data-key]")) {
      const v = value(input);
      if (v !== null) plan[input.dataset.key] = v;
    }
    plan.override = $$("#overrides li").map((li, i) => ({
      structure: $(`[data-key="override[${i}].structure"]`, li).value, material: $(`[data-key="override[${i}].material"]`, li).value }));
    plan.beam = $$("#beam-list .beam").map(collectBeam);
    return plan;
  }

  // A value outside its usual range is accepted once acknowledged as intended (kept with the plan, as in a file).
  function acknowledgeButton(name, beam) {
    const button = el("button", { type: "button", class: "acknowledge", text: `Acknowledge ${name} as intended` });
    button.addEventListener("click", () => {
      const holder = beam ? $(`.beam[data-index="${beam[1]}"]`) : null;
      const extra = holder ? JSON.parse(holder.dataset.extra || "{}") : planExtra;
      extra.acknowledge = Array.from(new Set([...(extra.acknowledge || []), name]));
      if (holder) holder.dataset.extra = JSON.stringify(extra);
      button.replaceWith(`acknowledged: save again`);
    });
    return button;
  }

  // Problems beside their fields: the longest key that has a place, else the plan-wide place.
  function clearProblems(root = editor) {
    for (const p of $$(".problem", root)) p.textContent = "";
    for (const i of $$("[aria-invalid]", root)) { i.removeAttribute("aria-invalid"); i.removeAttribute("aria-describedby"); }
  }
  function showProblems(problems) {
    for (const p of problems) {
      let key = p.field;
      let place = null;
      while (true) {
        place = $(`.problem[data-for="${CSS.escape(key)}"]`, editor);
        if (place || key === "") break;
        key = key.replace(/(\.[^.[\]]+|\[\d+\])$/, "");
        if (key === p.field) key = "";
      }
      if (!place) continue;
      const shown = p.field && p.field !== key ? p.field + ": " + p.message : p.message;
      place.append((place.textContent ? " · " : "") + shown);
      const ack = /acknowledge = \["(\w+)"\]/.exec(p.message);
      if (ack) place.append(" ", acknowledgeButton(ack[1], /^beam\[(\d+)\]/.exec(p.field)));
      place.id = place.id || "problem-" + Math.random().toString(36).slice(2);
      const input = place.parentElement && $("input, select, textarea", place.parentElement);
      if (input && place.parentElement.classList.contains("field")) { input.setAttribute("aria-invalid", "true"); input.setAttribute("aria-describedby", place.id); }
    }
  }

  // The beam's-eye view: applicator (dashed), target projection, cutout; +x right, +y up.
  function bevSvg(p, textarea, onDone) {
    const all = [...p.applicator_mm, ...p.aperture_mm, ...p.target_bev_mm];
    const r = Math.max(50, ...all.map(([x, y]) => Math.max(Math.abs(x), Math.abs(y)))) * 1.1;
    const pts = (poly) => poly.map(([x, y]) => `${x},${-y}`).join(" ");
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `${-r} ${-r} ${2 * r} ${2 * r}`);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `Beam's-eye view of ${p.beam}: applicator, ${p.target || "no target"} and cutout`);
    const add = (tag, attrs) => { const e = document.createElementNS(ns, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); svg.append(e); return e; };
    add("rect", { x: -r, y: -r, width: 2 * r, height: 2 * r, class: "bev-bg" });
    add("line", { x1: -r, y1: 0, x2: r, y2: 0, class: "bev-axis" });
    add("line", { x1: 0, y1: -r, x2: 0, y2: r, class: "bev-axis" });
    if (p.applicator_mm.length) add("polygon", { points: pts(p.applicator_mm), class: "bev-app" });
    if (p.target_bev_mm.length) add("polygon", { points: pts(p.target_bev_mm), class: "bev-target" });
    if (p.aperture_mm.length) add("polygon", { points: pts(p.aperture_mm), class: "bev-cutout" });
    if (textarea) editable(svg, add, r, textarea, onDone);
    return svg;
  }

  // The beam on the axial CT slice of its entry: outlines, central axis (solid) and field edges (dashed); +x to
  // the image's right (patient left), +y down (posterior), as the CT pictures show it.
  function axialSvg(p) {
    const a = p.axial;
    const all = Object.values(a.outlines).flat(2);
    if (!all.length) return document.createTextNode("");
    const xs = all.map((q) => q[0]), ys = all.map((q) => q[1]);
    const pad = 20, x0 = Math.min(...xs) - pad, y0 = Math.min(...ys) - pad;
    const w = Math.max(...xs) + pad - x0, h = Math.max(...ys) + pad - y0;
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `${x0} ${y0} ${w} ${h}`);
    svg.setAttribute("role", "img");
    svg.setAttribute("class", "axial-preview");
    svg.setAttribute("aria-label", `Beam ${p.beam} on the axial slice at z ${a.z_mm} mm: central axis and field edges`);
    const add = (tag, attrs) => { const e = document.createElementNS(ns, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); svg.append(e); return e; };
    add("rect", { x: x0, y: y0, width: w, height: h, class: "bev-bg" });
    for (const [name, rings] of Object.entries(a.outlines)) {
      const cls = name === p.target ? "axial-target" : "axial-outline";
      for (const ring of rings) add("polygon", { points: ring.map((q) => q.join(",")).join(" "), class: cls });
    }
    for (const edge of a.edges) add("line", { x1: edge[0][0], y1: edge[0][1], x2: edge[1][0], y2: edge[1][1], class: "axial-edge" });
    add("line", { x1: a.axis[0][0], y1: a.axis[0][1], x2: a.axis[1][0], y2: a.axis[1][1], class: "axial-axis" });
    return svg;
  }

  // A typed cutout's corners can be dragged in the beam's-eye view (the text is the keyboard's way to them).
  function editable(svg, add, r, textarea, onDone) {
    const points = polygon(textarea.value);
    if (!points || points.some((q) => q.length !== 2 || !q.every(Number.isFinite))) return;
    const shape = svg.querySelector(".bev-cutout");
    const draw = () => {
      shape.setAttribute("points", points.map(([x, y]) => `${x},${-y}`).join(" "));
      textarea.value = points.map((q) => q.join(" ")).join("\n");
    };
    points.forEach((q, k) => {
      const handle = add("circle", { cx: q[0], cy: -q[1], r: r * 0.035, class: "bev-handle" });
      handle.addEventListener("pointerdown", (e) => { handle.setPointerCapture(e.pointerId); e.preventDefault(); });
      handle.addEventListener("pointermove", (e) => {
        if (!handle.hasPointerCapture(e.pointerId)) return;
        const at = new DOMPoint(e.clientX, e.clientY).matrixTransform(svg.getScreenCTM().inverse());
        q[0] = Math.round(at.x * 2) / 2; q[1] = Math.round(-at.y * 2) / 2;
        handle.setAttribute("cx", q[0]); handle.setAttribute("cy", -q[1]);
        draw();
      });
      handle.addEventListener("pointerup", (e) => { handle.releasePointerCapture(e.pointerId); onDone(); });
    });
  }
  // How many previews are asked for or on their way (data-busy, so a test can wait for the drawing to settle).
  let busy = 0;
  const setBusy = (d) => { busy += d; editor.dataset.busy = String(busy); };
  async function preview(i) {
    const card = $(`.beam[data-index="${i}"]`);
    if (!card) return;
    setBusy(1);
    try {
      await drawPreview(i, card);
    } finally {
      setBusy(-1);
    }
  }
  async function drawPreview(i, card) {
    const fig = $(".bev-preview", card);
    const rsp = await post("/beams/preview", { plan: collect(), index: i });
    const body = await rsp.json();
    if (!rsp.ok) {
      $(".bev-facts", fig).textContent = "Not set up: " + (body.problems || []).map((p) => p.message).join("; ");
      $(".bev-svg", fig).replaceChildren();
      return;
    }
    const typed = $(`[data-key="beam[${i}].cutout_mm"]`, card);
    $(".bev-svg", fig).replaceChildren(bevSvg(body, typed.value.trim() ? typed : null, () => schedulePreview(i)), axialSvg(body));
    const depth = body.distal_mm === null ? "the central axis misses the target" : `target at ${body.proximal_mm}–${body.distal_mm} mm depth on the central axis`;
    $(".bev-facts", fig).textContent = `SSD ${body.ssd_mm} mm · isocenter (${body.isocenter_mm.join(", ")}) mm · ${depth}`;
  }
  const previewTimers = {};
  const schedulePreview = (i) => {
    if (previewTimers[i]) clearTimeout(previewTimers[i]); else setBusy(1);
    previewTimers[i] = setTimeout(() => { delete previewTimers[i]; preview(i); setBusy(-1); }, 300);
  };

  async function beamHelp(action, i, card) {
    const plan = collect();
    if (action === "suggest-energy") {
      const out = $(".suggestion", card);
      out.textContent = "Looking…";
      const rsp = await post("/beams/energy", { plan, index: i });
      const body = await rsp.json();
      if (!rsp.ok) { out.textContent = ""; showProblems(body.problems || []); return; }
      out.textContent = body.message;
      if (body.energy_mev !== null) $(`[data-key="beam[${i}].energy_mev"]`, card).value = String(body.energy_mev);
    } else if (action === "cutout-from-target") {
      const target = $(`[data-key="beam[${i}].cutout_target"]`, card).value;
      const margin = Number($(`[data-key="beam[${i}].margin_mm"]`, card).value || 0);
      const rsp = await post("/beams/cutout", { plan, index: i, target, margin_mm: margin });
      const body = await rsp.json();
      if (!rsp.ok) { showProblems(body.problems || [{ field: `beam[${i}].cutout_mm`, message: body.detail || body.error }]); return; }
      $(`[data-key="beam[${i}].cutout_mm"]`, card).value = body.cutout_mm.map((p) => p.join(" ")).join("\n");
    }
    preview(i);
  }

  editor.addEventListener("click", (e) => {
    const button = e.target.closest("button[data-action]");
    if (!button) return;
    const i = Number(button.dataset.index);
    const plan = collect();
    const action = button.dataset.action;
    if (action === "remove-override") { plan.override.splice(i, 1); render(plan); return; }
    if (action === "clone-beam") {
      const copy = JSON.parse(JSON.stringify(plan.beam[i]));
      copy.name = (copy.name || "B").slice(0, 14) + "_2";
      plan.beam.splice(i + 1, 0, copy); render(plan);
      $(`[data-key="beam[${i + 1}].name"]`).focus(); return;
    }
    if (action === "delete-beam") { plan.beam.splice(i, 1); render(plan); $("#add-beam").focus(); return; }
    beamHelp(action, i, button.closest(".beam"));
  });
  // A field changed: its problem is no longer the one shown (the next save says whether it is solved).
  editor.addEventListener("input", (e) => {
    if ($("#editor-message").classList.contains("error")) say("");
    const field = e.target.closest(".field");
    if (!field || !e.target.hasAttribute("aria-invalid")) return;
    e.target.removeAttribute("aria-invalid");
    e.target.removeAttribute("aria-describedby");
    const place = $(".problem", field);
    if (place) place.textContent = "";
  });
  editor.addEventListener("change", (e) => {
    const card = e.target.closest(".beam");
    if (!card) {
      if (e.target.id === "f-machine") render(collect());
      return;
    }
    const i = Number(card.dataset.index);
    if (e.target.dataset.key === `beam[${i}].name`) {
      $("h3", card).textContent = "Beam " + (i + 1) + (e.target.value ? " · " + e.target.value : "");
    }
    if (e.target.dataset.key === `beam[${i}].setup`) {
      for (const kind of ["target", "aim", "isocenter"]) $(".setup-" + kind, card).hidden = e.target.value !== kind;
    }
    schedulePreview(i);
  });
  $("#add-override").addEventListener("click", () => {
    const plan = collect();
    plan.override.push({ structure: structureNames()[0], material: choices.materials[0] });
    render(plan);
    $(`[data-key="override[${plan.override.length - 1}].structure"]`).focus();
  });
  $("#add-beam").addEventListener("click", () => {
    $('.problem[data-for="beam"]').textContent = "";
    const plan = collect();
    const m = machine();
    plan.beam.push({ name: "B" + (plan.beam.length + 1), energy_mev: m.energies[0], applicator: m.applicators[0], gantry_deg: 0, collimator_deg: 0, couch_deg: 0, target: structureNames().find((n) => /PTV|CTV|GTV/i.test(n)) || "" });
    render(plan);
    $(`[data-key="beam[${plan.beam.length - 1}].name"]`).focus();
  });

  $("#plan-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (approved) return;
    clearProblems();
    say("Saving…", "info");
    const plan = collect();
    const rsp = await post(planId ? `/plans/${encodeURIComponent(planId)}/save` : "/plans", { plan });
    const body = await rsp.json();
    if (!rsp.ok) {
      say("Not saved: " + (body.error || body.detail), "error");
      showProblems(body.problems || []);
      const first = $("[aria-invalid]", editor);
      if (first) first.focus();
      return;
    }
    if (!planId) { window.location = body.url; return; }
    if (body.changed) { sessionStorage.setItem("rtexport-editor-message", body.message); window.location.reload(); return; }
    say(body.message);
  });

  const cloneForm = $("#clone-form");
  if (cloneForm) cloneForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const rsp = await post(`/plans/${encodeURIComponent(planId)}/clone`, { new_id: $("#clone-id").value, label: $("#clone-label").value });
    const body = await rsp.json();
    if (rsp.ok) { window.location = body.url; return; }
    $("#problem-clone").textContent = [body.error, ...(body.problems || []).map((p) => p.message)].join(" · ");
  });

  const computeButton = $("#compute-dose");
  if (computeButton) computeButton.addEventListener("click", async () => {
    const out = $("#dose-result"), bar = $("#dose-progress");
    computeButton.disabled = true; bar.hidden = false; out.textContent = "Computing the dose…";
    const rsp = await post(`/plans/${encodeURIComponent(planId)}/dose`, {});
    const body = await rsp.json();
    if (!rsp.ok) { out.textContent = body.error || body.detail; computeButton.disabled = false; bar.hidden = true; return; }
    const poll = async () => {
      const s = await (await fetch(`/jobs/${body.job}`, { headers: { Accept: "application/json" } })).json();
      if (s.state === "running") { setTimeout(poll, 500); return; }
      bar.hidden = true; computeButton.disabled = false;
      const mu = s.results.filter((r) => r.beam).map((r) => `${r.beam}: ${r.mu} MU`).join(", ");
      out.replaceChildren(el("p", { class: s.ok ? "ok" : "error", text: s.message + (mu ? " " + mu + " per fraction." : "") }),
        ...(s.warnings.length ? [el("ul", { class: "warnings" }, ...s.warnings.map((w) => el("li", { text: w })))] : []),
        ...(s.findings.length ? [el("ul", {}, ...s.findings.map((w) => el("li", { text: w })))] : []),
        ...(s.ok ? [el("a", { href: window.location.pathname, id: "show-dose", text: "Show the dose and the approval" })] : []));
    };
    poll();
  });

  function renderHistory(rows) {
    const list = $("#history");
    if (!list) return;
    list.replaceChildren(...rows.map((r) => el("li", {},
      el("strong", { text: `Revision ${r.revision}` }), ` by ${r.by} (${r.via}), ${r.at} · ${r.action === "plan-clone" ? "clone" : r.source}`,
      ...(r.changes.length ? [el("ul", {}, ...r.changes.map((c) => el("li", { text: c })))] : []))));
  }

  (async () => {
    const kept = sessionStorage.getItem("rtexport-editor-message");
    if (kept) { sessionStorage.removeItem("rtexport-editor-message"); say(kept); }
    const data = await (await fetch(editor.dataset.source, { headers: { Accept: "application/json" } })).json();
    choices = data.choices;
    approved = data.approved;
    if (choices.unavailable.length) {
      const u = $("#editor-unavailable");
      u.hidden = false; u.className = "flash error"; u.textContent = "Beams cannot be planned: " + choices.unavailable.join("; ");
      $("#beams-block").setAttribute("aria-disabled", "true");
      $("#add-beam").disabled = true;
      $("#save-plan").disabled = true;
    }
    render(data.plan);
    renderHistory(data.history || []);
    if (approved) {
      $("#editor-fields").disabled = true; $("#save-plan").disabled = true;
      $("#approved-note").hidden = false;
      if (computeButton) computeButton.disabled = true;
    }
    editor.dataset.ready = "true";
  })();
})();
