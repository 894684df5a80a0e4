// image.js: the image view: a data-set image by index, or an uploaded JPEG/PNG that the
// server runs through preprocessing, the ViT (stopped at the SAE's layer) and the SAE.
// Hover or click a patch to list its latents; the image's top latents with heatmaps.
//
// Panels: the view is built from panels, each {id, title, render(el, state)} where state
// = {sae, saes, result, imageURL(mode, latent), select(latent)}. Another panel (e.g. an
// intervention panel) is added with registerPanel() and is drawn after every result.
import { getJSON, upload, imageURL, uploadURL } from './api.js';
import { h, fmt, errorBox } from './util.js';

const panels = [];
export function registerPanel(panel) { panels.push(panel); }

let last = null; // the last result, so switching back to the view keeps an upload

export async function render(root, ctx) {
  const arg = ctx.args[0];
  const meta = ctx.saes[ctx.sae];
  root.append(h('h1', {}, 'Image'));
  const input = h('input', { type: 'number', min: 0, max: Math.max(0, meta.n_images - 1), value: arg ?? 0, id: 'image-index', style: 'width:90px' });
  const file = h('input', { type: 'file', accept: 'image/jpeg,image/png', id: 'upload-file' });
  const msg = h('span', { id: 'image-msg', class: 'muted' });
  root.append(h('div', { class: 'card row', style: 'align-items:center' },
    h('label', {}, `data-set image (0–${meta.n_images - 1}) `, input), h('button', { class: 'link', id: 'image-go', onclick: () => ctx.go(`#/sae/${ctx.sae}/image/${input.value}`) }, 'show'),
    h('span', { class: 'muted' }, 'or upload a JPEG/PNG'), file, msg));
  const body = h('div', { id: 'image-body' });
  root.append(body);
  if (!meta.live) { body.append(errorBox(`live images are off for this SAE: ${meta.why_not_live}`)); return; }
  file.addEventListener('change', async () => {
    if (!file.files.length) return;
    msg.textContent = 'running…';
    try {
      const res = await upload(ctx.sae, file.files[0]);
      last = { sae: ctx.sae, res, name: file.files[0].name };
      msg.textContent = '';
      show(body, ctx, last);
    } catch (e) {
      msg.textContent = '';
      body.replaceChildren(errorBox(e.message));
    }
  });
  if (arg !== undefined) {
    const res = await getJSON(`sae/${ctx.sae}/image/${Number(arg)}`);
    show(body, ctx, { sae: ctx.sae, res, name: `image ${arg}` });
  } else if (last && last.sae === ctx.sae) {
    show(body, ctx, last);
  } else {
    body.append(h('p', { class: 'muted' }, 'Choose an image of the data set or upload one.'));
  }
}

function show(body, ctx, { sae, res, name }) {
  const url = (mode, latent) => (res.upload ? uploadURL(sae, res.upload, mode, latent) : imageURL(sae, res.image, mode, latent));
  const [gw, gh] = res.grid;
  const img = h('img', { id: 'image-main', src: url('plain'), alt: name });
  const canvas = h('canvas', { id: 'patch-grid', width: 448, height: 448 });
  const list = h('ul', { class: 'plain', id: 'patch-latents' });
  const title = h('h2', { id: 'patch-title' }, 'Hover or click a patch');
  let pinned = -1, heat = null;
  const g = canvas.getContext('2d');
  function outline(p, color) {
    const cw = canvas.width / gw, ch = canvas.height / gh;
    g.strokeStyle = color; g.lineWidth = 3;
    g.strokeRect((p % gw) * cw + 1.5, Math.floor(p / gw) * ch + 1.5, cw - 3, ch - 3);
  }
  function listPatch(p) {
    g.clearRect(0, 0, canvas.width, canvas.height);
    if (pinned >= 0) outline(pinned, '#c2410c');
    if (p >= 0 && p !== pinned) outline(p, '#2563eb');
    const shown = pinned >= 0 ? pinned : p;
    if (shown < 0) return;
    title.textContent = `Patch ${shown} (row ${Math.floor(shown / gw)}, column ${shown % gw})${pinned >= 0 ? ' · pinned' : ''}`;
    const items = res.patches[shown];
    list.replaceChildren(...(items.length ? items.map(([lat, v]) => h('li', {},
      h('a', { href: `#/sae/${sae}/latent/${lat}` }, `latent ${lat}`),
      h('button', { class: 'link', onclick: () => select(lat) }, 'heatmap'), h('span', {}, fmt(v)))) : [h('li', {}, 'no latent fires here')]));
  }
  const patchAt = (e) => {
    const r = canvas.getBoundingClientRect();
    const x = Math.floor((e.clientX - r.left) / r.width * gw), y = Math.floor((e.clientY - r.top) / r.height * gh);
    return x >= 0 && y >= 0 && x < gw && y < gh ? y * gw + x : -1;
  };
  canvas.addEventListener('mousemove', (e) => listPatch(patchAt(e)));
  canvas.addEventListener('click', (e) => { const p = patchAt(e); pinned = pinned === p ? -1 : p; listPatch(p); });
  function select(lat) {
    heat = lat;
    img.src = lat === null ? url('plain') : url('heat', lat);
    heatLabel.textContent = lat === null ? 'showing: plain' : `showing: heatmap of latent ${lat}`;
  }
  const heatLabel = h('span', { class: 'muted', id: 'heat-label' }, 'showing: plain');
  const timing = h('p', { class: 'muted', id: 'server-time' },
    `${name}${res.class ? ' · ' + res.class : ''} · ${res.width}×${res.height} model input, ${gw}×${gh} patches · ` +
    `server ${fmt(res.ms, 3)} ms (${res.source === 'store' ? 'activations from the store' : 'preprocessing + ViT + SAE'})`);
  const left = h('div', { class: 'card' }, h('div', { class: 'viewer-stage' }, img, canvas), timing,
    h('div', { class: 'row', style: 'align-items:center' }, heatLabel, h('button', { class: 'link', onclick: () => select(null) }, 'plain'),
      res.has_seg ? h('button', { class: 'link', onclick: () => { heat = null; img.src = url('seg'); heatLabel.textContent = 'showing: segmentation'; } }, 'segmentation') : null));
  const right = h('div', { class: 'card panel-slot' }, title, list);
  const tops = h('div', { class: 'grid-imgs', id: 'image-top-latents' }, res.top.map((t) => h('figure', {},
    h('img', { class: 'heat-img', loading: 'lazy', src: url('heat', t.latent), alt: `latent ${t.latent}`, onclick: () => select(t.latent) }),
    h('figcaption', {}, h('a', { href: `#/sae/${sae}/latent/${t.latent}` }, `latent ${t.latent}`), h('span', {}, fmt(t.value))))));
  const extra = h('div', { class: 'row', id: 'image-panels' });
  const state = { sae, saes: ctx.saes, result: res, imageURL: url, select };
  for (const p of panels) {
    const el = h('div', { class: 'card panel-slot', id: `panel-${p.id}` }, h('h2', {}, p.title));
    extra.append(el);
    p.render(el, state);
  }
  body.replaceChildren(h('div', { class: 'row' }, left, right),
    h('div', { class: 'card' }, h('h2', {}, 'Top latents of this image (largest patch value; click for its heatmap)'), tops,
      res.top.length ? null : h('p', { class: 'muted' }, 'no latent fires on this image')), extra);
  void heat;
}
