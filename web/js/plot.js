// plot.js: the page's plots as plain SVG (no plotting library): a scatter with log axes
// and clickable points, and a bar histogram.
const NS = 'http://www.w3.org/2000/svg';
const s = (tag, attrs = {}) => { const e = document.createElementNS(NS, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); return e; };

function ticks(lo, hi, n) {
  const step = Math.pow(10, Math.floor(Math.log10((hi - lo) / n || 1)));
  const k = [1, 2, 5, 10].find((m) => (hi - lo) / (m * step) <= n) * step;
  const out = [];
  for (let t = Math.ceil(lo / k) * k; t <= hi + 1e-9; t += k) out.push(Number(t.toPrecision(6)));
  return out;
}

// points: [{x, y, id, title, out}] (x, y already in plot units); onClick(id).
export function scatter({ points, xLabel, yLabel, width = 440, height = 300, onClick, id }) {
  const m = { l: 46, r: 10, t: 10, b: 36 };
  const svg = s('svg', { width, height, viewBox: `0 0 ${width} ${height}` });
  if (id) svg.id = id;
  const fin = points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
  if (!fin.length) { const t = s('text', { x: 20, y: 30 }); t.textContent = 'nothing to plot'; svg.append(t); return svg; }
  let [x0, x1] = [Math.min(...fin.map((p) => p.x)), Math.max(...fin.map((p) => p.x))];
  let [y0, y1] = [Math.min(...fin.map((p) => p.y)), Math.max(...fin.map((p) => p.y))];
  if (x1 - x0 < 1e-9) { x0 -= 0.5; x1 += 0.5; }
  if (y1 - y0 < 1e-9) { y0 -= 0.5; y1 += 0.5; }
  // A margin of 6 % so that points and their labels at the extremes stay inside.
  const mx = (x1 - x0) * 0.06, my = (y1 - y0) * 0.06;
  x0 -= mx; x1 += mx; y0 -= my; y1 += my;
  const px = (x) => m.l + (x - x0) / (x1 - x0) * (width - m.l - m.r);
  const py = (y) => height - m.b - (y - y0) / (y1 - y0) * (height - m.t - m.b);
  svg.append(s('line', { class: 'axis', x1: m.l, y1: height - m.b, x2: width - m.r, y2: height - m.b }));
  svg.append(s('line', { class: 'axis', x1: m.l, y1: m.t, x2: m.l, y2: height - m.b }));
  for (const t of ticks(x0, x1, 6)) { const e = s('text', { x: px(t), y: height - m.b + 14, 'text-anchor': 'middle' }); e.textContent = t; svg.append(e); }
  for (const t of ticks(y0, y1, 5)) { const e = s('text', { x: m.l - 4, y: py(t) + 4, 'text-anchor': 'end' }); e.textContent = t; svg.append(e); }
  const xl = s('text', { x: (m.l + width - m.r) / 2, y: height - 4, 'text-anchor': 'middle' }); xl.textContent = xLabel; svg.append(xl);
  const yl = s('text', { x: 12, y: (m.t + height - m.b) / 2, transform: `rotate(-90 12 ${(m.t + height - m.b) / 2})`, 'text-anchor': 'middle' }); yl.textContent = yLabel; svg.append(yl);
  for (const p of fin) {
    const c = s('circle', { class: 'pt' + (p.out ? ' out' : ''), cx: px(p.x), cy: py(p.y), r: p.r || 3.2, 'data-id': p.id });
    const t = s('title'); t.textContent = p.title || p.id; c.append(t);
    if (onClick) c.addEventListener('click', () => onClick(p.id));
    svg.append(c);
    if (p.label) { const e = s('text', { x: px(p.x) + 6, y: py(p.y) - 5 }); e.textContent = p.label; svg.append(e); }
  }
  return svg;
}

// counts over [lo, hi] in equal bins.
export function histogram({ counts, lo, hi, xLabel, width = 440, height = 200 }) {
  const m = { l: 46, r: 10, t: 10, b: 36 };
  const svg = s('svg', { width, height, viewBox: `0 0 ${width} ${height}`, id: 'latent-hist' });
  const top = Math.max(1, ...counts);
  const bw = (width - m.l - m.r) / counts.length;
  counts.forEach((c, i) => {
    const bh = c / top * (height - m.t - m.b);
    const r = s('rect', { class: 'histbar', x: m.l + i * bw + 0.5, y: height - m.b - bh, width: Math.max(1, bw - 1), height: bh });
    const t = s('title'); t.textContent = `${c} rows in [${(lo + i * (hi - lo) / counts.length).toPrecision(3)}, ${(lo + (i + 1) * (hi - lo) / counts.length).toPrecision(3)})`; r.append(t);
    svg.append(r);
  });
  svg.append(s('line', { class: 'axis', x1: m.l, y1: height - m.b, x2: width - m.r, y2: height - m.b }));
  for (const t of ticks(lo, hi, 6)) { const x = m.l + (t - lo) / ((hi - lo) || 1) * (width - m.l - m.r); const e = s('text', { x, y: height - m.b + 14, 'text-anchor': 'middle' }); e.textContent = t; svg.append(e); }
  const yt = s('text', { x: m.l - 4, y: m.t + 8, 'text-anchor': 'end' }); yt.textContent = top; svg.append(yt);
  const xl = s('text', { x: (m.l + width - m.r) / 2, y: height - 4, 'text-anchor': 'middle' }); xl.textContent = xLabel; svg.append(xl);
  return svg;
}
