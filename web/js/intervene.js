// intervene.js: the image page's intervention panel. Sliders scale latents of the shown
// image (-10x..+10x; 1x leaves a latent as it is) at the SAE's layer; the server keeps
// the SAE's error term, runs the ViT's later blocks and the served probe (saev serve
// --probe), and answers the prediction before and after (POST /api/sae/<i>/intervene,
// docs/viewer.md). A class probe shows its class probabilities as bars; a patch probe its
// predicted label per patch as a coloured grid. Slider moves are debounced, and an answer
// older than the latest request is dropped.
import { postJSON } from './api.js';
import { h, fmt, errorBox } from './util.js';
import { registerPanel } from './image.js';

const N_SLIDERS = 6;      // top latents given a slider at first
const DEBOUNCE_MS = 120;  // quiet time after a slider move before asking the server

// A distinct colour per patch label (golden-angle hues), the same in both grids.
const labelColour = (label) => `hsl(${(label * 137.508) % 360}, 62%, ${label % 2 ? 48 : 62}%)`;

// The labels as a translucent colour per patch over the picture the model saw.
function drawGrid(canvas, picture, labels, [gw, gh], compare) {
  const g = canvas.getContext('2d');
  const cw = canvas.width / gw, ch = canvas.height / gh;
  g.clearRect(0, 0, canvas.width, canvas.height);
  g.imageSmoothingEnabled = false; // the model's pixels, as the image view shows them
  if (picture.complete && picture.naturalWidth) g.drawImage(picture, 0, 0, canvas.width, canvas.height);
  g.globalAlpha = 0.55;
  labels.forEach((lab, p) => {
    g.fillStyle = labelColour(lab);
    g.fillRect((p % gw) * cw, Math.floor(p / gw) * ch, cw, ch);
  });
  g.globalAlpha = 1;
  labels.forEach((lab, p) => {
    const x = (p % gw) * cw, y = Math.floor(p / gw) * ch;
    if (compare && compare[p] !== lab) { g.strokeStyle = '#111'; g.lineWidth = 2; g.strokeRect(x + 1, y + 1, cw - 2, ch - 2); }
  });
}

function classBars(ans, names) {
  const rows = ans.classes.map((c, k) => ({ k, name: names[k] ?? `class ${c}`, b: ans.before.probs[k], a: ans.after.probs[k] }));
  rows.sort((x, y) => Math.max(y.a, y.b) - Math.max(x.a, x.b));
  const bar = (p, cls) => h('span', { class: `bar ${cls}`, style: `width:${(100 * p).toFixed(1)}%` });
  return h('div', { class: 'iv-bars' }, rows.slice(0, 10).map((r) => h('div', { class: 'iv-bar-row' },
    h('span', { class: 'iv-name', title: r.name }, r.name),
    h('span', { class: 'iv-track' }, bar(r.b, 'iv-before')), h('span', { class: 'iv-num' }, fmt(r.b)),
    h('span', { class: 'iv-track' }, bar(r.a, 'iv-after')), h('span', { class: 'iv-num' }, fmt(r.a)))));
}

function render(el, state) {
  const meta = state.saes[state.sae];
  const res = state.result;
  if (!meta.probe) {
    el.append(h('p', { class: 'muted' }, 'No probe is served: start saev serve with --probe probe.safetensors (saev probe) to edit latents here.'));
    return;
  }
  const scales = new Map(); // latent -> scale
  const sliders = h('div', { class: 'iv-sliders', id: 'iv-sliders' });
  const out = h('div', { id: 'iv-result' }, h('p', { class: 'muted' }, 'asking the server…'));
  const timing = h('span', { class: 'muted', id: 'iv-time' });
  const addInput = h('input', { type: 'number', min: 0, max: meta.d_sae - 1, id: 'iv-add-latent', placeholder: 'latent', style: 'width:80px' });
  let seq = 0, timer = null, lastAnswer = null;
  const picture = new Image();
  picture.onload = () => { if (lastAnswer) show(lastAnswer); };
  picture.src = state.imageURL('plain');

  function addSlider(lat) {
    if (scales.has(lat) || !(lat >= 0 && lat < meta.d_sae)) return;
    scales.set(lat, 1);
    const label = h('span', { class: 'iv-num' }, '1×');
    const range = h('input', { type: 'range', min: -10, max: 10, step: 0.1, value: 1, id: `iv-slider-${lat}`, 'data-latent': lat });
    range.addEventListener('input', () => {
      scales.set(lat, Number(range.value));
      label.textContent = `${fmt(Number(range.value))}×`;
      schedule();
    });
    sliders.append(h('div', { class: 'iv-slider' }, h('a', { href: `#/sae/${state.sae}/latent/${lat}` }, `latent ${lat}`), range, label));
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(ask, DEBOUNCE_MS);
  }

  async function ask() {
    const mine = ++seq;
    const edits = [...scales].filter(([, a]) => a !== 1).map(([latent, scale]) => ({ latent, scale }));
    const body = res.upload ? { upload: res.upload, edits } : { image: res.image, edits };
    try {
      const ans = await postJSON(`sae/${state.sae}/intervene`, body);
      if (mine !== seq) return;
      show(ans);
    } catch (e) {
      if (mine === seq) out.replaceChildren(errorBox(e.message));
    }
  }

  function show(ans) {
    if (ans !== lastAnswer) out.dataset.answers = String(Number(out.dataset.answers || 0) + 1); // lets a test wait for the next answer
    lastAnswer = ans;
    timing.textContent = `server ${fmt(ans.ms, 3)} ms · ${ans.patches_edited} patches edited`;
    const names = ans.class_names || [];
    if (ans.target === 'class') {
      const top = (probs) => ans.classes.reduce((b, _, k) => (probs[k] > probs[b] ? k : b), 0);
      const nm = (k) => names[k] ?? `class ${ans.classes[k]}`;
      out.replaceChildren(
        h('p', { id: 'iv-summary' }, `before: ${nm(top(ans.before.probs))} · after: ${nm(top(ans.after.probs))}`),
        h('div', { class: 'iv-legend muted' }, h('span', {}, 'class'), h('span', {}, 'before'), h('span', {}), h('span', {}, 'after'), h('span', {})),
        classBars(ans, names));
      return;
    }
    const changed = ans.after.labels.reduce((n, l, p) => n + (l !== ans.before.labels[p]), 0);
    const before = h('canvas', { width: 196, height: 196, id: 'iv-grid-before', class: 'iv-grid' });
    const after = h('canvas', { width: 196, height: 196, id: 'iv-grid-after', class: 'iv-grid' });
    drawGrid(before, picture, ans.before.labels, ans.grid, null);
    drawGrid(after, picture, ans.after.labels, ans.grid, ans.before.labels);
    const seen = [...new Set([...ans.before.labels, ...ans.after.labels])].sort((x, y) => x - y);
    const nameOf = (c) => { const k = ans.classes.indexOf(c); return names[k] ?? `label ${c}`; };
    out.replaceChildren(
      h('p', { id: 'iv-summary' }, `${changed} of ${ans.after.labels.length} patch predictions changed (outlined)`),
      h('div', { class: 'row' }, h('figure', { class: 'iv-fig' }, before, h('figcaption', {}, 'before')),
        h('figure', { class: 'iv-fig' }, after, h('figcaption', {}, 'after'))),
      h('div', { class: 'iv-keys' }, seen.map((c) => h('span', { class: 'iv-key' }, h('i', { style: `background:${labelColour(c)}` }), nameOf(c)))));
  }

  for (const t of res.top.slice(0, N_SLIDERS)) addSlider(t.latent);
  el.append(
    h('p', { class: 'muted' }, `${meta.probe.target} probe on block ${meta.probe.block}; edits at block ${meta.block}, the SAE's error term kept`),
    h('div', { class: 'row' }, h('div', { class: 'iv-controls' }, sliders,
    h('div', { class: 'row', style: 'align-items:center' },
      h('label', {}, 'add latent ', addInput),
      h('button', { class: 'link', id: 'iv-add', onclick: () => { addSlider(Number(addInput.value)); addInput.value = ''; } }, 'add'),
      h('button', { class: 'link', id: 'iv-reset', onclick: () => { for (const r of sliders.querySelectorAll('input')) r.value = 1, r.dispatchEvent(new Event('input')); } }, 'reset'),
      timing)), out));
  ask();
}

registerPanel({ id: 'intervene', title: 'Intervene: scale latents, read the probe', render });
