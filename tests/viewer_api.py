"""viewer_api.py HOST PORT RUN_DIR STORE WEB_COPY SECONDS: the API checks of
tests/test_serve_api.sh against a running `saev serve` (run with /usr/bin/python3).

References: top.safetensors and eval.json as written beside the checkpoints; latents
recomputed in float64 numpy from the store and the checkpoint (viewer_check.encode);
decoder-row cosines in float64. Then bad input (400/404/405/413), path traversal
(403/404), truncated and stalled uploads, and 64 concurrent clients for SECONDS seconds
(no error; p50/p99 latency printed). Exits 1 with a message on the first failure.
"""
import glob, http.client, io, json, math, os, socket, sys, threading, time
import numpy as np
from PIL import Image
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sae_compare import load
from viewer_check import encode, read_store

host, port, run_dir, store, web_copy, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], float(sys.argv[6])
EPS32 = 2.0 ** -24
failures = 0

def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)

def request(method, path, body=None, headers=None, timeout=60):
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, r.getheader("Content-Type") or "", data

def get_json(path, want=200):
    st, ct, data = request("GET", path)
    if st != want:
        fail(f"GET {path}: status {st}, want {want}: {data[:300]!r}")
    if not ct.startswith("application/json"):
        fail(f"GET {path}: content type {ct}")
    return json.loads(data)

def expect(method, path, want, body=None, headers=None, what=""):
    st, ct, data = request(method, path, body, headers)
    if st != want:
        fail(f"{method} {path} {what}: status {st}, want {want}: {data[:300]!r}")
    if st >= 400 and path.startswith("/api/"):
        msg = json.loads(data).get("error", "")
        if not msg:
            fail(f"{method} {path}: error answer without a message")
        return msg
    return data

# ---- catalog: SAEs, their L0/NMSE from eval.json -----------------------------------
saes = get_json("/api/saes")
ckpts = sorted(glob.glob(os.path.join(run_dir, "*", "sae.safetensors")))
if len(saes) != len(ckpts):
    fail(f"/api/saes lists {len(saes)} SAEs, the run has {len(ckpts)}")
for s in saes:
    ev = json.load(open(os.path.join(os.path.dirname(s["checkpoint"]), "eval.json")))
    if s["l0"] != ev["l0"] or s["nmse"] != ev["nmse"]:
        fail(f"SAE {s['id']}: l0/nmse {s['l0']}/{s['nmse']} differ from eval.json {ev['l0']}/{ev['nmse']}")
print(f"saes: {len(saes)} with L0 and NMSE from eval.json")

acts, index, status = read_store(store, 0)
for s in saes:
    i = s["id"]
    ckpt = s["checkpoint"]
    top, _ = load(os.path.join(s["visuals"], "top.safetensors"))
    lat = get_json(f"/api/sae/{i}/latents")
    for k in ("freq", "mean_value", "max_value"):
        api = np.array([np.nan if v is None else v for v in lat[k]], np.float64)
        ref = top[k].astype(np.float64)
        # cJSON prints 15 significant digits when they read back within DBL_EPSILON
        # (relative), else 17: the float32 values come back within 2 DBL_EPSILON.
        ok = ~np.isnan(ref)
        if not np.array_equal(np.isnan(api), ~ok) or not np.allclose(api[ok], ref[ok], rtol=2 * np.finfo(np.float64).eps, atol=0):
            fail(f"SAE {i}: /latents {k} differs from top.safetensors")
    f_all = encode(ckpt, acts.reshape(-1, acts.shape[2])).reshape(acts.shape[0], acts.shape[1], -1)
    t, _ = load(ckpt)
    w_dec = t["W_dec"].astype(np.float64)
    S = w_dec.shape[0]
    norms = np.linalg.norm(w_dec, axis=1)
    for s_id in [0, S // 2, S - 1]:
        d = get_json(f"/api/sae/{i}/latent/{s_id}")
        want = [int(index[x]) for x in top["images"][s_id] if x >= 0]  # store positions -> data-set indices
        got = [e["image"] for e in d.get("top", [])]
        if got != want:
            fail(f"SAE {i} latent {s_id}: top images {got}, top.safetensors has {want}")
        cos = w_dec @ w_dec[s_id] / (norms * norms[s_id])
        cos[s_id] = -np.inf
        ref = np.argsort(-cos, kind="stable")[:10]
        got_ids = [e["latent"] for e in d["similar"]]
        got_cos = np.array([e["cosine"] for e in d["similar"]])
        # the server sums the dot products in float64 from float32 weights: equal to 1e-12
        if not np.allclose(got_cos, cos[ref], rtol=0, atol=1e-9) or not np.allclose(cos[got_ids], cos[ref], rtol=0, atol=1e-9):
            fail(f"SAE {i} latent {s_id}: similar {got_ids} {got_cos}, float64 reference {list(ref)} {cos[ref]}")
        # Histogram: every image of the store is sampled here (48 < serve.hist_images), so
        # the counts are those of the float64 latents, except values within float32
        # rounding of a bin edge, which may land in either neighbour.
        hst = d["histogram"]
        vals = f_all[:, :, s_id].reshape(-1)
        vals = vals[vals != 0]
        mx = float(top["max_value"][s_id]) if top["max_value"][s_id] > 0 else 1.0
        bins = len(hst["counts"])
        pos = vals / mx * bins
        ref_counts = np.bincount(np.clip(np.floor(pos).astype(int), 0, bins - 1), minlength=bins)
        near = np.abs(pos - np.round(pos)) < 1e-4 * bins
        if sum(hst["counts"]) != len(vals) or np.abs(np.array(hst["counts"]) - ref_counts).sum() > 2 * near.sum():
            fail(f"SAE {i} latent {s_id}: histogram {hst['counts']} vs float64 {list(ref_counts)}")
    # Data-set image: per-patch latents against the float64 encode of its store rows; the
    # tolerance is the float32 GEMM bound d·eps·(Σ|x_i W_ij| + |b_j|) doubled.
    cfg = json.loads(load(ckpt)[1]["saev_sae_config"])
    scale = float(cfg.get("data_scale", 1.0))
    w_enc = t["W_enc"].astype(np.float64)
    b_enc = t["b_enc"].astype(np.float64)
    pos_of = {int(index[p]): p for p in range(len(index)) if status[p] == 1}
    for img in [0, 7, len(pos_of) - 1]:
        p = pos_of[img]
        d = get_json(f"/api/sae/{i}/image/{img}")
        if d["source"] != "store":
            fail(f"image {img}: source {d['source']}, want store")
        ref = f_all[p]
        x = acts[p] * scale
        bound = 2 * x.shape[1] * EPS32 * (np.abs(x) @ np.abs(w_enc) + np.abs(b_enc))
        for q, lst in enumerate(d["patches"]):
            nz = np.nonzero(ref[q])[0]
            want_n = min(5, len(nz))
            if len(lst) != want_n:
                fail(f"image {img} patch {q}: {len(lst)} latents listed, {want_n} fire")
            for lat_id, v in lst:
                if abs(v - ref[q, lat_id]) > bound[q, lat_id] or ref[q, lat_id] == 0:
                    fail(f"image {img} patch {q} latent {lat_id}: {v}, float64 {ref[q, lat_id]} (bound {bound[q, lat_id]:.2e})")
            strongest = np.sort(ref[q][nz])[::-1][:want_n]
            if not np.allclose(sorted([v for _, v in lst], reverse=True), strongest, rtol=0, atol=float(bound[q].max())):
                fail(f"image {img} patch {q}: listed values are not the {want_n} largest")
        # Upload of the same file: the ViT path, same latents. The store holds the same
        # ViT's float32 output computed in a batch of 8; the single-image forward sums in
        # another order, and through two blocks at width 48 (sums of <= 96 terms, relative
        # error <= 96·eps each) the encoder input agrees to about 1e-5; 1e-3 of the largest
        # value leaves a margin of 100.
        src = sorted(glob.glob(os.path.join(os.path.dirname(os.path.dirname(store)), "data", "segmentation", "images", "training", "*.jpg")))[img]
        body = open(src, "rb").read()
        st, ct, data = request("POST", f"/api/sae/{i}/upload", body, {"Content-Type": "image/jpeg"})
        if st != 200:
            fail(f"upload of {src}: status {st}: {data[:200]!r}")
        u = json.loads(data)
        if not (0 < u["ms"] < 1000):
            fail(f"upload took {u['ms']} ms on the server")
        tol = 1e-3 * np.abs(ref).max()
        for q, lst in enumerate(u["patches"]):
            for lat_id, v in lst:
                if abs(v - ref[q, lat_id]) > tol:
                    fail(f"upload of image {img} patch {q} latent {lat_id}: {v}, store rows give {ref[q, lat_id]}")
        for mode in ("plain", "seg"):
            st, ct, data = request("GET", f"/api/sae/{i}/upload/{u['upload']}.png?mode={mode}")
            want = 200 if mode == "plain" else 404  # an upload has no patch labels
            if st != want or (st == 200 and data[:8] != b"\x89PNG\r\n\x1a\n"):
                fail(f"upload png mode={mode}: status {st}")
        st, ct, data = request("GET", f"/api/sae/{i}/upload/{u['upload']}.png?mode=heat&latent={u['top'][0]['latent']}")
        if st != 200 or ct != "image/png":
            fail(f"upload heatmap: status {st} {ct}")
    # Heatmap pixels: a top image rendered here; patches where the latent is zero keep
    # the plain picture's pixels, the others differ.
    s_id = int(np.argmax(top["freq"]))
    img0 = int(index[top["images"][s_id][0]])
    heat = np.asarray(Image.open(io.BytesIO(expect("GET", f"/api/sae/{i}/latent/{s_id}/top/0.png?mode=heat", 200))).convert("RGB"), np.int64)
    plain = np.asarray(Image.open(io.BytesIO(expect("GET", f"/api/sae/{i}/image/{img0}.png?mode=plain", 200))).convert("RGB"), np.int64)
    if heat.shape != plain.shape or heat.shape[0] < 224:
        fail(f"heatmap {heat.shape} vs plain {plain.shape} (want >= 224 px)")
    g = int(round(math.sqrt(acts.shape[1])))
    ph = heat.shape[0] // g
    vals = f_all[pos_of[img0], :, s_id]
    for q in range(g * g):
        blk = (slice((q // g) * ph, (q // g + 1) * ph), slice((q % g) * ph, (q % g + 1) * ph))
        same = np.array_equal(heat[blk], plain[blk])
        if same != (vals[q] == 0):
            fail(f"latent {s_id} image {img0} patch {q}: value {vals[q]} but heatmap {'unchanged' if same else 'changed'}")
    # A latent visuals rendered: its files are served as they are, and the server's own
    # render of the same image is the same picture. visuals encodes the row in a batch of
    # other rows, the server alone, so a heat value may differ in its last float32 bits
    # and a channel by 1 after rounding; the plain and segmentation pixels are exact.
    vis = json.load(open(os.path.join(s["visuals"], "index.json")))
    r_id = vis["rendered"][0]
    r_img = int(index[top["images"][r_id][0]])
    for mode, suffix, own, slack in [("heat", "_heat", f"/api/sae/{i}/image/{r_img}.png?mode=heat&latent={r_id}", 1),
                                     ("plain", "", f"/api/sae/{i}/image/{r_img}.png?mode=plain", 0),
                                     ("seg", "_seg", f"/api/sae/{i}/image/{r_img}.png?mode=seg", 0)]:
        disk = open(os.path.join(s["visuals"], "latents", str(r_id), f"0{suffix}.png"), "rb").read()
        if expect("GET", f"/api/sae/{i}/latent/{r_id}/top/0.png?mode={mode}", 200) != disk:
            fail(f"latent {r_id}: served 0{suffix}.png differs from visuals' file")
        a = np.asarray(Image.open(io.BytesIO(disk)).convert("RGB"), np.int64)
        b = np.asarray(Image.open(io.BytesIO(expect("GET", own, 200))).convert("RGB"), np.int64)
        if a.shape != b.shape or np.abs(a - b).max() > slack:
            fail(f"latent {r_id} image {r_img} mode {mode}: the server's render differs from visuals' by {np.abs(a - b).max() if a.shape == b.shape else a.shape}")
    print(f"SAE {i}: latents, top lists, similar latents, histograms, image and upload latents match the float64 references")

# ---- bad input --------------------------------------------------------------------
S0 = saes[0]["d_sae"]
n_img = saes[0]["n_images"]
for path in ["/api/sae/x/latents", "/api/sae/0/latent/abc", "/api/sae/0/latent/1e3", "/api/sae/0/image/1.png?mode=bogus",
             "/api/sae/0/image/1.png?mode=heat", "/api/sae/0/image/1.png?mode=heat&latent=x", "/api/sae/0/latent/3/top/0.png?mode=x",
             "/api/sae/0/image/%20"]:
    expect("GET", path, 400)
for path in [f"/api/sae/0/latent/{S0}", "/api/sae/0/latent/-1", f"/api/sae/0/image/{n_img}", "/api/sae/0/image/-1",
             "/api/sae/0/upload/99999.png", f"/api/sae/{len(saes)}/latents", "/api/nope", "/api/sae/0/latent/0/top/999.png",
             f"/api/sae/0/image/1.png?mode=heat&latent={S0}", "/nope.html", "/api/sae/0//latents", "/api/"]:
    expect("GET", path, 404)
expect("PUT", "/api/saes", 405, body=b"x")
expect("DELETE", "/index.html", 405)
expect("POST", "/api/sae/0/upload", 400, body=b"", what="(empty)")
msg = expect("POST", "/api/sae/0/upload", 400, body=b"this is not an image" * 10, what="(garbage)")
expect("POST", "/api/sae/0/upload", 400, body=open(src, "rb").read()[:300], what="(truncated JPEG)")
expect("POST", "/api/sae/9/upload", 404, body=b"x")
expect("POST", "/api/sae/0/latents", 404, body=b"x")
# An image over data.max_pixels (89478485 by default): 10000 x 9000 = 9e7 pixels.
buf = io.BytesIO()
Image.new("L", (10000, 9000)).save(buf, "PNG")
msg = expect("POST", "/api/sae/0/upload", 413, body=buf.getvalue(), headers={"Content-Type": "image/png"}, what="(over max_pixels)")
if "max_pixels" not in msg:
    fail(f"413 for pixels does not name data.max_pixels: {msg}")
print(f"bad input: 400/404/405 answered with messages; {len(buf.getvalue())}-byte PNG of 9e7 pixels: 413 ({msg})")

def read_all(s):
    """Everything the server sends until it closes (or resets) the connection."""
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    return out

def raw(data, read=True, timeout=30):
    s = socket.create_connection((host, port), timeout=timeout)
    s.sendall(data)
    return s, (read_all(s) if read else b"")

# Over 20 MB by Content-Length: answered 413 before the body is sent.
s, out = raw(b"POST /api/sae/0/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 25000000\r\nConnection: close\r\n\r\n")
s.close()
if not out.startswith(b"HTTP/1.1 413"):
    fail(f"a 25 MB Content-Length got {out[:60]!r}")
# Over 20 MB chunked (no Content-Length): read, dropped, answered 413.
s = socket.create_connection((host, port), timeout=60)
s.sendall(b"POST /api/sae/0/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
chunk = b"\0" * (1 << 20)
try:
    for _ in range(22):
        s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
    s.sendall(b"0\r\n\r\n")
except (BrokenPipeError, ConnectionResetError):
    pass
out = read_all(s)
s.close()
if not out.startswith(b"HTTP/1.1 413"):
    fail(f"a 22 MB chunked upload got {out[:60]!r}")
# Truncated uploads: a body shorter than its Content-Length, the client closing; and one
# that stalls with the connection open while others are served.
s, _ = raw(b"POST /api/sae/0/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + open(src, "rb").read()[:1000], read=False)
s.close()
stalled, _ = raw(b"POST /api/sae/0/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"\xff\xd8" * 100, read=False)
t0 = time.time()
get_json("/api/saes")
if time.time() - t0 > 5:
    fail("the server stalled behind a stalled upload")
print("uploads: 413 over 20 MB (by Content-Length and chunked), truncated and stalled uploads leave the server answering")

# ---- traversal ----------------------------------------------------------------------
for path in ["/../CMakeLists.txt", "/%2e%2e/CMakeLists.txt", "/js/../../CMakeLists.txt", "/js/%2e%2e/%2e%2e/etc/passwd",
             "/%2E%2E/%2E%2E/etc/passwd", "/..%2f..%2fetc%2fpasswd"]:
    s, out = raw(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    s.close()
    if not (out.startswith(b"HTTP/1.1 403") or out.startswith(b"HTTP/1.1 404")) or b"root:" in out:
        fail(f"GET {path} (raw) got {out[:80]!r}")
for path in ["//etc/passwd", "/%2fetc%2fpasswd", "/etc/passwd", "/leak/passwd", "/leak.txt", "/api/../index.html"]:
    s, out = raw(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    s.close()
    if not (out.startswith(b"HTTP/1.1 403") or out.startswith(b"HTTP/1.1 404")) or b"root:" in out:
        fail(f"GET {path} (raw) got {out[:80]!r}")
st, ct, data = request("GET", "/inner.js")  # a symlink that stays inside the web folder
if st != 200 or not ct.startswith("text/javascript"):
    fail(f"a symlink inside the web folder: {st} {ct}")
st, _, data = request("GET", "/")
if st != 200 or b"<!doctype html>" not in data:
    fail("GET / does not give index.html")
print("traversal: .., %2e%2e, absolute paths and symlinks out of the web folder get 403/404")

# ---- 64 concurrent clients ----------------------------------------------------------
paths = ["/api/saes", "/api/sae/0/latents", "/api/sae/1/latent/5", "/api/sae/0/latent/3/top/0.png?mode=heat", "/api/sae/0/image/3",
         "/api/sae/1/image/4.png?mode=seg", "/", "/js/app.js", "/style.css", "/api/sae/0/latent/999999", "/api/sae/0/image/5.png?mode=heat&latent=2"]
want = {p: (404 if "999999" in p else 200) for p in paths}
upload_body = open(src, "rb").read()
lat, errors = [], []
lock = threading.Lock()
stop = time.time() + seconds

def client(k):
    c = http.client.HTTPConnection(host, port, timeout=60)
    n = 0
    mine = []
    while time.time() < stop:
        n += 1
        try:
            t0 = time.time()
            if n % 25 == k % 25:
                c.request("POST", "/api/sae/0/upload", body=upload_body, headers={"Content-Type": "image/jpeg"})
                w = 200
            else:
                p = paths[(n + k) % len(paths)]
                c.request("GET", p)
                w = want[p]
            r = c.getresponse()
            r.read()
            mine.append(time.time() - t0)
            if r.status != w:
                with lock:
                    errors.append(f"{r.status} (want {w})")
        except Exception as e:  # a dropped connection or a timeout is an error
            with lock:
                errors.append(repr(e))
            c.close()
            c = http.client.HTTPConnection(host, port, timeout=60)
    c.close()
    with lock:
        lat.extend(mine)

threads = [threading.Thread(target=client, args=(k,)) for k in range(64)]
t0 = time.time()
for t in threads:
    t.start()
for t in threads:
    t.join()
el = time.time() - t0
stalled.close()
a = np.sort(np.array(lat))
print(f"concurrency: 64 clients for {el:.1f} s: {len(a)} requests ({len(a) / el:.0f}/s), errors {len(errors)}, "
      f"latency p50 {1e3 * a[len(a) // 2]:.1f} ms, p99 {1e3 * a[int(len(a) * 0.99)]:.1f} ms, max {1e3 * a[-1]:.1f} ms")
if errors:
    fail(f"{len(errors)} errors under load, e.g. {errors[:5]}")
get_json("/api/saes")
print("viewer_api: ok")
