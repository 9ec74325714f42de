// Collected by tests/web/test_accessibility.py: see the comment above TEXTS_JS there.
() => {
  const rgba = (s) => { const m = s.match(/rgba?\(([^)]+)\)/); if (!m) return null;
    const p = m[1].split(/[ ,\/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
  const over = (top, under) => { const a = top[3]; return [0, 1, 2].map((i) => top[i] * a + under[i] * (1 - a)).concat(1); };
  const behind = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      if (e instanceof SVGElement && e.tagName !== "svg") continue;
      if (e.tagName === "svg") {
        const r = e.querySelector("rect"), box = el.getBoundingClientRect();
        if (r) { const rb = r.getBoundingClientRect(); const f = rgba(getComputedStyle(r).fill);
          if (f && box.left >= rb.left - 1 && box.right <= rb.right + 1 && box.top >= rb.top - 1 && box.bottom <= rb.bottom + 1) {
            layers.push([f[0], f[1], f[2], Number(getComputedStyle(r).fillOpacity) * f[3]]); } }
        continue;
      }
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    let color = [255, 255, 255, 1];
    for (const l of layers.reverse()) color = over(l, color);
    return color;
  };
  const out = [];
  for (const el of document.body.querySelectorAll("*")) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || ["SCRIPT", "STYLE", "OPTION", "OPTGROUP"].includes(el.tagName)) continue;
    if (!el.getClientRects().length || el.closest("[hidden], details:not([open]) > :not(summary)")) continue;
    const cs = getComputedStyle(el);
    if (cs.visibility !== "visible") continue;
    if (el.closest(":disabled, fieldset:disabled, [aria-disabled=true]")) continue;
    const svg = el instanceof SVGElement;
    const fg = rgba(svg ? cs.fill : cs.color);
    if (!fg) continue;
    let opacity = 1;
    for (let e = el; e; e = e.parentElement) opacity *= Number(getComputedStyle(e).opacity);
    const bg = behind(el);
    out.push({ text: [...el.childNodes].filter((n) => n.nodeType === 3).map((n) => n.textContent.trim()).join(" ").slice(0, 60),
      tag: el.tagName, id: el.id, cls: String(el.className && el.className.baseVal !== undefined ? el.className.baseVal : el.className),
      fg: over([fg[0], fg[1], fg[2], fg[3] * opacity], bg), bg, size: parseFloat(cs.fontSize), weight: Number(cs.fontWeight) });
  }
  return out;
}
