// latent.js: one latent: statistics, the histogram of its values over sampled store
// rows, its top images (heatmap / plain / segmentation), the latents with the most
// similar decoder rows, previous / next.
import { getJSON, topImageURL } from './api.js';
import { h, fmt } from './util.js';
import { histogram } from './plot.js';

let mode = 'heat'; // kept across latents, so paging through keeps the chosen view

export async function render(root, ctx) {
  const s = Number(ctx.args[0]);
  const d = await getJSON(`sae/${ctx.sae}/latent/${s}`);
  const meta = ctx.saes[ctx.sae];
  const nav = h('div', { class: 'row', style: 'align-items:center' },
    h('a', { class: 'btn', id: 'latent-prev', href: `#/sae/${ctx.sae}/latent/${d.prev}` }, `← ${d.prev}`),
    h('h1', { style: 'margin:0' }, `Latent ${s}`),
    h('a', { class: 'btn', id: 'latent-next', href: `#/sae/${ctx.sae}/latent/${d.next}` }, `${d.next} →`),
    h('a', { href: `#/sae/${ctx.sae}/latents`, class: 'muted' }, 'all latents'));
  root.append(nav);
  const stats = h('dl', { class: 'stats', id: 'latent-stats' },
    h('dt', {}, 'frequency'), h('dd', {}, fmt(d.freq)),
    h('dt', {}, 'log₁₀ frequency'), h('dd', {}, d.freq > 0 ? fmt(Math.log10(d.freq)) : '—'),
    h('dt', {}, 'mean value'), h('dd', {}, fmt(d.mean_value)),
    h('dt', {}, 'max value'), h('dd', {}, fmt(d.max_value)),
    h('dt', {}, 'top images'), h('dd', {}, d.top ? d.top.length : 0),
    h('dt', {}, 'rendered by'), h('dd', {}, d.rendered ? 'saev visuals' : 'this server, on demand'));
  const statCard = h('div', { class: 'card' }, h('h2', {}, 'Statistics'), stats);
  const histCard = h('div', { class: 'card' }, h('h2', {}, 'Activation histogram'));
  if (d.histogram) {
    histCard.append(histogram({ counts: d.histogram.counts, lo: d.histogram.lo, hi: d.histogram.hi || 1, xLabel: 'value (rows where it fires)' }),
      h('p', { class: 'muted' }, `${d.histogram.counts.reduce((a, b) => a + b, 0)} firing rows among ${d.histogram.rows} rows of ${d.histogram.images} sampled images`));
  }
  const simCard = h('div', { class: 'card' }, h('h2', {}, 'Most similar decoder rows (cosine)'),
    h('ul', { class: 'plain', id: 'similar' }, (d.similar || []).map((e) => h('li', {},
      h('a', { href: `#/sae/${ctx.sae}/latent/${e.latent}` }, `latent ${e.latent}`),
      h('span', {}, h('span', { class: 'bar', style: `width:${Math.max(0, e.cosine) * 80}px` }), ' ', fmt(e.cosine))))));
  root.append(h('div', { class: 'row' }, statCard, histCard, simCard));

  const grid = h('div', { class: 'grid-imgs', id: 'top-images' });
  const modes = [['heat', 'heatmap'], ['plain', 'plain']].concat(meta.has_seg ? [['seg', 'segmentation']] : []);
  const toggle = h('span', { class: 'toggle', id: 'mode-toggle' }, modes.map(([m, label]) => h('button', { 'data-mode': m, class: m === mode ? 'on' : '', onclick: () => { mode = m; draw(); } }, label)));
  function draw() {
    for (const b of toggle.querySelectorAll('button')) b.classList.toggle('on', b.dataset.mode === mode);
    grid.replaceChildren(...(d.top || []).map((t) => h('figure', {},
      h('a', { href: `#/sae/${ctx.sae}/image/${t.image}` }, h('img', { class: 'top-img', loading: 'lazy', alt: `image ${t.image}`, src: topImageURL(ctx.sae, s, t.rank, mode) })),
      h('figcaption', {}, h('span', {}, `#${t.image}${t.class ? ' ' + t.class : ''}`), h('span', {}, fmt(t.value))))));
  }
  draw();
  root.append(h('div', { class: 'card' }, h('div', { class: 'row', style: 'justify-content:space-between;align-items:center' },
    h('h2', {}, `Top images (score: the largest value over an image's patches)`), toggle), grid,
    d.top && d.top.length ? null : h('p', { class: 'muted' }, 'this latent never fires on the recorded images')));
}
