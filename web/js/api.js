// api.js: the page's only way to the server: JSON and image URLs under /api/ (docs/viewer.md).
export async function getJSON(path) {
  const r = await fetch(`/api/${path}`);
  const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
  return body;
}

// POSTs raw image bytes; the answer is an image JSON with an `upload` id.
export async function upload(sae, file) {
  const r = await fetch(`/api/sae/${sae}/upload`, { method: 'POST', body: file, headers: { 'Content-Type': file.type || 'application/octet-stream' } });
  const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
  return body;
}

export const topImageURL = (sae, latent, rank, mode) => `/api/sae/${sae}/latent/${latent}/top/${rank}.png?mode=${mode}`;
export const imageURL = (sae, image, mode, latent) => `/api/sae/${sae}/image/${image}.png?mode=${mode}` + (latent != null ? `&latent=${latent}` : '');
export const uploadURL = (sae, id, mode, latent) => `/api/sae/${sae}/upload/${id}.png?mode=${mode}` + (latent != null ? `&latent=${latent}` : '');

// POSTs a JSON body; the answer's JSON, or an Error with the server's message.
export async function postJSON(path, body) {
  const r = await fetch(`/api/${path}`, { method: 'POST', body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' } });
  const answer = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) throw new Error(answer.error || `HTTP ${r.status}`);
  return answer;
}
