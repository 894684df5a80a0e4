// app.js: the router. Routes (location.hash):
//   #/sae/<i>/latents          the latents table, scatter and sweep comparison
//   #/sae/<i>/latent/<s>       one latent
//   #/sae/<i>/image[/<n>]      an image of the data set by index, or an upload
// Each view is a module exporting render(root, ctx) with ctx = {sae, saes, params, go}.
import { getJSON } from './api.js';
import { errorBox } from './util.js';
import * as latents from './latents.js';
import * as latent from './latent.js';
import * as image from './image.js';
import './intervene.js'; // registers the image page's intervention panel

const app = document.getElementById('app');
const select = document.getElementById('sae-select');
let saes = [];
let renderSeq = 0;

function parse() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean);
  if (parts[0] !== 'sae') return { sae: 0, view: 'latents', args: [] };
  return { sae: Number(parts[1]) || 0, view: parts[2] || 'latents', args: parts.slice(3) };
}

export function go(path) { location.hash = path; }

async function route() {
  const seq = ++renderSeq;
  const r = parse();
  const sae = saes[r.sae] ? r.sae : 0;
  select.value = String(sae);
  document.getElementById('nav-latents').href = `#/sae/${sae}/latents`;
  document.getElementById('nav-image').href = `#/sae/${sae}/image`;
  document.getElementById('nav-latents').classList.toggle('active', r.view === 'latents' || r.view === 'latent');
  document.getElementById('nav-image').classList.toggle('active', r.view === 'image');
  const views = { latents, latent, image };
  const view = views[r.view] || latents;
  const root = document.createElement('div');
  try {
    await view.render(root, { sae, saes, args: r.args, go, isCurrent: () => seq === renderSeq });
  } catch (e) {
    root.replaceChildren(errorBox(e.message));
  }
  if (seq === renderSeq) { app.replaceChildren(root); window.scrollTo(0, 0); }
}

async function start() {
  try {
    saes = await getJSON('saes');
  } catch (e) {
    app.replaceChildren(errorBox(`cannot list the SAEs: ${e.message}`));
    return;
  }
  select.replaceChildren(...saes.map((s) => {
    const o = document.createElement('option');
    o.value = String(s.id);
    o.textContent = `${s.id}: ${s.name} (${s.activation}${s.k ? ' k=' + s.k : ''}, ${s.d_sae} latents)`;
    return o;
  }));
  select.addEventListener('change', () => {
    const r = parse();
    go(`#/sae/${select.value}/${r.view === 'image' ? 'image' : 'latents'}`);
  });
  document.getElementById('status').textContent = `${saes.length} SAE${saes.length === 1 ? '' : 's'}`;
  window.addEventListener('hashchange', route);
  route();
}

start();
