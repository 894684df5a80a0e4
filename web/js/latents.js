// latents.js: the latents view: a table sortable by id, frequency, mean and max value,
// filtered by log10 frequency and log10 mean-value ranges; the frequency-vs-value
// scatter (click a point to open the latent); the SAEs of a sweep side by side by L0
// and NMSE (click one to switch).
import { getJSON } from './api.js';
import { h, fmt, log10, errorBox } from './util.js';
import { scatter } from './plot.js';

const PAGE = 200; // rows drawn at once; "more" adds another page

export async function render(root, ctx) {
  const meta = ctx.saes[ctx.sae];
  root.append(h('h1', {}, `Latents of SAE ${ctx.sae}`), h('p', { class: 'muted' },
    `${meta.checkpoint} · ${meta.d_sae} latents · block ${meta.block} · ${meta.tokens} · store ${meta.store}` + (meta.visuals ? ` · visuals ${meta.visuals}` : '')));
  root.append(sweepCard(ctx));
  let d;
  try {
    d = await getJSON(`sae/${ctx.sae}/latents`);
  } catch (e) {
    root.append(errorBox(e.message));
    return;
  }
  const rows = d.freq.map((f, i) => ({ id: i, freq: f, mean: d.mean_value[i], max: d.max_value[i] }));
  const state = { key: 'freq', dir: -1, lf: [-6, 0], lv: [-3, 3], shown: PAGE };
  const tableCard = h('div', { class: 'card' });
  const plotCard = h('div', { class: 'card' });
  const inRange = (r) => {
    const lf = log10(r.freq), lv = log10(r.mean);
    return lf >= state.lf[0] && lf <= state.lf[1] && lv >= state.lv[0] && lv <= state.lv[1];
  };
  const num = (label, arr, i, id) => h('label', {}, label, ' ', h('input', { type: 'number', step: '0.5', value: arr[i], id,
    oninput: (e) => { const v = parseFloat(e.target.value); if (Number.isFinite(v)) { arr[i] = v; state.shown = PAGE; draw(); } } }));
  const filters = h('div', { class: 'filters' },
    h('span', {}, 'log₁₀ frequency in [', num('', state.lf, 0, 'f-lf-lo'), ',', num('', state.lf, 1, 'f-lf-hi'), ']'),
    h('span', {}, 'log₁₀ mean value in [', num('', state.lv, 0, 'f-lv-lo'), ',', num('', state.lv, 1, 'f-lv-hi'), ']'),
    h('span', { id: 'latents-count', class: 'muted' }));
  const cols = [['id', 'latent'], ['freq', 'frequency'], ['mean', 'mean value'], ['max', 'max value']];
  const thead = h('thead', {}, h('tr', {}, cols.map(([k, label]) => h('th', { 'data-key': k, onclick: () => {
    state.dir = state.key === k ? -state.dir : (k === 'id' ? 1 : -1); state.key = k; state.shown = PAGE; draw();
  } }, label))));
  const tbody = h('tbody');
  const more = h('button', { class: 'link', onclick: () => { state.shown += PAGE; draw(); } }, 'more');
  tableCard.append(h('h2', {}, 'Table'), filters, h('div', { class: 'table-wrap' }, h('table', { id: 'latents-table' }, thead, tbody)), more);
  root.append(h('div', { class: 'row' }, h('div', { style: 'flex: 1.3; min-width: 420px' }, tableCard), h('div', { style: 'flex: 1; min-width: 460px' }, plotCard)));

  function draw() {
    const key = state.key, dir = state.dir;
    const list = rows.filter(inRange).sort((a, b) => {
      const x = a[key], y = b[key];
      const bad = (v) => v === null || Number.isNaN(v);
      if (bad(x) !== bad(y)) return bad(x) ? 1 : -1;
      return (x - y) * dir || a.id - b.id;
    });
    for (const th of thead.querySelectorAll('th')) th.className = th.dataset.key === key ? (dir > 0 ? 'sorted-asc' : 'sorted-desc') : '';
    tbody.replaceChildren(...list.slice(0, state.shown).map((r) => h('tr', { 'data-latent': r.id, onclick: () => ctx.go(`#/sae/${ctx.sae}/latent/${r.id}`) },
      h('td', {}, r.id), h('td', {}, fmt(r.freq)), h('td', {}, fmt(r.mean)), h('td', {}, fmt(r.max)))));
    more.style.display = list.length > state.shown ? '' : 'none';
    root.querySelector('#latents-count').textContent = `${list.length} of ${rows.length} latents`;
    const pts = rows.filter((r) => r.freq > 0 && r.mean > 0).map((r) => ({ x: log10(r.freq), y: log10(r.mean), id: r.id, out: !inRange(r),
      title: `latent ${r.id}: frequency ${fmt(r.freq)}, mean ${fmt(r.mean)}` }));
    plotCard.replaceChildren(h('h2', {}, 'Frequency against mean value (click a point)'),
      scatter({ points: pts, xLabel: 'log₁₀ frequency', yLabel: 'log₁₀ mean value', id: 'latents-scatter', onClick: (id) => ctx.go(`#/sae/${ctx.sae}/latent/${id}`) }),
      h('p', { class: 'muted' }, `${rows.filter((r) => r.freq === 0).length} dead latents not shown; grey points are outside the filters.`));
  }
  draw();
}

function sweepCard(ctx) {
  const card = h('div', { class: 'card', id: 'sweep' }, h('h2', {}, 'SAEs side by side'));
  const saes = ctx.saes;
  const table = h('table', {}, h('thead', {}, h('tr', {}, ['SAE', 'activation', 'latents', 'L0', 'NMSE', ''].map((t) => h('th', {}, t)))),
    h('tbody', {}, saes.map((s) => h('tr', { onclick: () => ctx.go(`#/sae/${s.id}/latents`), style: s.id === ctx.sae ? 'font-weight:600' : '' },
      h('td', {}, `${s.id}: ${s.name}`), h('td', {}, s.activation + (s.k ? ` k=${s.k}` : '')), h('td', {}, s.d_sae), h('td', {}, fmt(s.l0)), h('td', {}, fmt(s.nmse)),
      h('td', {}, s.visuals ? '' : 'no visuals')))));
  const pts = saes.filter((s) => s.l0 !== null && s.nmse !== null).map((s) => ({ x: s.l0, y: s.nmse, id: s.id, label: String(s.id), r: s.id === ctx.sae ? 6 : 4,
    title: `SAE ${s.id}: L0 ${fmt(s.l0)}, NMSE ${fmt(s.nmse)}` }));
  const plot = pts.length ? scatter({ points: pts, xLabel: 'L0', yLabel: 'NMSE', width: 340, height: 220, id: 'sweep-scatter', onClick: (id) => ctx.go(`#/sae/${id}/latents`) })
    : h('p', { class: 'muted' }, 'no eval.json beside the checkpoints: run saev evaluate for L0 and NMSE');
  card.append(h('div', { class: 'row' }, h('div', { style: 'flex: 1; min-width: 420px' }, table), plot));
  return card;
}
