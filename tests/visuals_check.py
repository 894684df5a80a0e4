"""visuals_check.py: the float64 numpy reference for tests/test_visuals.sh (run with /usr/bin/python3).

  make-saes STORE OUT_DIR        SAE checkpoints of every variant (relu, relu centred with
                                 data_scale 0.5, top-k, batch-top-k, Matryoshka top-k), random
                                 weights with biases set from the store's rows so that latents fire
                                 sparsely; OUT_DIR/<variant>/sae.safetensors
  top STORE TOKENS CKPT OUT      OUT/top.safetensors against an independent float64 encoding of the
                                 store's rows (h5py + numpy)
  pictures STORE CKPT OUT PREP   every rendered image: <j>.png against `saev preprocess` (PREP: a
                                 folder of its outputs, one per image, made by the shell test),
                                 <j>_heat.png against the heat formula of visuals.h from the
                                 latent.json patch values, which are checked against float64 too
  seg STORE OUT                  every <j>_seg.png against the store's patch_labels (visuals.h's blend)

Tolerances. A float32 dot product of d terms computed in any order differs from the exact one
by at most gamma_d * sum|x_i w_i| with gamma_d ~ d * 2^-24 (Higham, Accuracy and Stability of
Numerical Algorithms, 3.1); the scaling and centring of the input add two roundings per term.
So per row and latent tol = (d + 3) * 2^-24 * (|x_in| @ |W_enc| + |b_enc|), computed here.
A latent whose firing decision is within tol of its cut (0 for relu, the threshold for
batch-top-k, the k-th value for top-k) on some row is ambiguous: float32 may decide either
way, so such latents are only checked for what cannot depend on it; the test requires them to
be few (under 10 % of the latents).
"""
import glob, json, os, sys
import h5py
import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sae_compare import load, save

EPS32 = 2.0 ** -24


def store_rows(store, tokens):
    """Rows [n_images * T, d] of the store's only layer, image-major, and the store positions."""
    files = sorted(glob.glob(f"{store}/acts-*.h5"))
    acts, pos = [], []
    first = 0
    for fn in files:
        with h5py.File(fn, "r") as f:
            a = f["activations"][:, 0].astype(np.float32)  # [n, tokens, d]
            st = f["status"][:]
            has_cls = int(f.attrs["has_cls"])
            for i in range(a.shape[0]):
                if st[i] != 1:
                    continue
                t = a[i, has_cls:] if tokens == "patches" else a[i, :1] if tokens == "cls" else a[i]
                acts.append(t)
                pos.append(first + i)
            first += a.shape[0]
    return np.concatenate(acts), np.array(pos)


def read_ckpt(path):
    t, meta = load(path)
    cfg = json.loads(meta["saev_sae_config"])
    return {k: np.asarray(v, np.float64) for k, v in t.items()}, cfg


def encode(w, cfg, x):
    """Float64 f, the fire mask, the per-entry tolerance and the ambiguous mask for rows x [n, d]."""
    scale = cfg.get("data_scale", 1.0)
    xs = x.astype(np.float64) * scale
    x_in = xs - w["b_dec"] if cfg.get("center_input") else xs
    h = x_in @ w["W_enc"] + w["b_enc"]
    d = x.shape[1]
    mag = (np.abs(xs) + (np.abs(w["b_dec"]) if cfg.get("center_input") else 0)) @ np.abs(w["W_enc"]) + np.abs(w["b_enc"])
    tol = (d + 3) * EPS32 * mag
    kind = cfg["activation"]
    if kind == "relu":
        fire = h > 0
        amb = np.abs(h) <= tol
    elif kind == "batch-top-k":
        th = float(w["threshold"].reshape(-1)[0])
        fire = h > th
        amb = np.abs(h - th) <= tol + EPS32 * abs(th)
    else:
        k = cfg["k"]
        order = np.argsort(-h, axis=1, kind="stable")
        fire = np.zeros_like(h, dtype=bool)
        np.put_along_axis(fire, order[:, :k], True, axis=1)
        kth = np.take_along_axis(h, order[:, k - 1:k], axis=1)
        tmax = tol.max(axis=1, keepdims=True)
        amb = np.abs(h - kth) <= 2 * tmax
        amb &= (np.take_along_axis(h, order[:, k - 1:k], axis=1) - np.take_along_axis(h, order[:, k:k + 1], axis=1) <= 2 * tmax)
    f = np.where(fire, h, 0.0)
    return f, fire, tol, amb


def make_saes(store, out):
    x, _ = store_rows(store, "patches")
    d = x.shape[1]
    S = 64
    rng = np.random.default_rng(7)
    variants = [("a_relu", "relu", 1.0, False, None), ("b_relu_centred", "relu", 0.5, True, None),
                ("c_topk", "top-k", 1.0, False, None), ("d_batchtopk", "batch-top-k", 2.0, False, None),
                ("e_matryoshka", "top-k", 1.0, False, [16, 32, 64])]
    for name, kind, scale, centre, prefixes in variants:
        W_enc = rng.normal(0, 1 / np.sqrt(d), (d, S)).astype(np.float32)
        W_dec = np.ascontiguousarray(W_enc.T)
        b_dec = (x.mean(axis=0) * scale * 0.5).astype(np.float32)
        x_in = x.astype(np.float64) * scale - (b_dec if centre else 0)
        h0 = x_in @ W_enc
        # Each latent fires on about 3 % of the rows (its 97th percentile is the cut).
        b_enc = (-np.quantile(h0, 0.97, axis=0)).astype(np.float32)
        k = 4
        cfg = {"d_model": d, "d_sae": S, "activation": kind, "k": k, "l1_coeff": 0.0, "momentum": 0.1, "k_aux": 0,
               "aux_alpha": 0.0, "matryoshka_prefixes": prefixes or [S], "sample_prefixes": False,
               "n_prefixes": len(prefixes or [S]), "dead_threshold_tokens": 1000000, "normalize_w_dec": True,
               "remove_parallel_grads": True, "center_input": centre, "data_scale": scale}
        t = {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}
        if kind == "batch-top-k":
            # A threshold between the k-th and (k+1)-th largest pre-activation of a typical row.
            h = x_in @ W_enc + b_enc
            t["threshold"] = np.array([np.median(np.sort(h, axis=1)[:, -k - 1])], np.float32)
        if name == "a_relu":
            t["b_enc"][5] = -1e6  # a latent that never fires: NaN statistics, empty list
        os.makedirs(f"{out}/{name}", exist_ok=True)
        save(f"{out}/{name}/sae.safetensors", t, {"format": "saev-c sae 1", "saev_sae_config": json.dumps(cfg), "step": "0"})


def check_top(store, tokens, ckpt, out):
    top, meta = load(f"{out}/top.safetensors")
    w, cfg = read_ckpt(ckpt)
    x, pos = store_rows(store, tokens)
    n_img = len(pos)
    T = x.shape[0] // n_img
    f, fire, tol, amb = encode(w, cfg, x)
    N, S = f.shape
    K = top["values"].shape[1]
    bad, ambiguous = [], 0
    for name in ("values", "freq", "mean_value", "max_value"):
        assert top[name].dtype == np.float32, name
    assert top["images"].dtype == np.int64
    assert top["values"].shape == (S, K) and top["freq"].shape == (S,)
    assert meta["format"] == "saev-visuals-1" and meta["tokens"] == tokens and int(meta["top_k"]) == K
    for s in range(S):
        fs, ts = f[:, s].reshape(n_img, T), tol[:, s].reshape(n_img, T)
        fired = fire[:, s].reshape(n_img, T)
        n_fired = int(fired.sum())
        if amb[:, s].any():
            ambiguous += 1
            # Independent of the ambiguous decisions: listed images are real, scores match.
            for j in range(K):
                img = top["images"][s, j]
                if img < 0:
                    continue
                i = int(np.searchsorted(pos, img))
                cand = fs[i][fired[i] | amb[:, s].reshape(n_img, T)[i]]
                if not np.any(np.abs(cand - top["values"][s, j]) <= ts[i].max()):
                    bad.append(f"latent {s} (ambiguous): image {img} score {top['values'][s, j]} is none of its row values")
            continue
        ours_fired = top["freq"][s] * np.float64(N)
        if np.float32(n_fired / N) != top["freq"][s]:
            bad.append(f"latent {s}: freq {top['freq'][s]} != {n_fired}/{N}")
        if n_fired == 0:
            if not (np.isnan(top["mean_value"][s]) and np.isnan(top["max_value"][s]) and np.all(top["images"][s] == -1)
                    and np.all(top["values"][s] == -np.inf)):
                bad.append(f"latent {s} never fires but has statistics {top['mean_value'][s]}, {top['max_value'][s]}, {top['images'][s]}")
            continue
        tmax = ts[fired].max()
        mean = fs[fired].sum() / n_fired
        if not abs(top["mean_value"][s] - mean) <= tmax + EPS32 * 2 * abs(mean):
            bad.append(f"latent {s}: mean_value {top['mean_value'][s]} vs {mean}")
        mx = fs[fired].max()
        if not abs(top["max_value"][s] - mx) <= tmax + EPS32 * 2 * abs(mx):
            bad.append(f"latent {s}: max_value {top['max_value'][s]} vs {mx}")
        # Reference list: score = max over the image's firing rows; order (score desc, image asc).
        has = fired.any(axis=1)
        score = np.where(fired, fs, -np.inf).max(axis=1)
        itol = np.where(fired, ts, 0).max(axis=1)
        order = sorted(np.nonzero(has)[0], key=lambda i: (-score[i], pos[i]))[:K]
        n_list = int((top["images"][s] >= 0).sum())
        if n_list != len(order):
            bad.append(f"latent {s}: {n_list} images listed, {len(order)} fire")
            continue
        if np.any(top["images"][s, n_list:] != -1) or np.any(top["values"][s, n_list:] != -np.inf):
            bad.append(f"latent {s}: empty slots are not -1 / -inf")
        v = top["values"][s, :n_list].astype(np.float64)
        if np.any(np.diff(v) > 0):
            bad.append(f"latent {s}: values not descending {v}")
        for j in range(n_list):
            img = top["images"][s, j]
            i = int(np.searchsorted(pos, img))
            if i >= n_img or pos[i] != img or not has[i]:
                bad.append(f"latent {s}: image {img} listed but the latent does not fire on it")
                continue
            if not abs(v[j] - score[i]) <= itol[i] + EPS32 * abs(score[i]):
                bad.append(f"latent {s}: image {img} score {v[j]} vs {score[i]}")
            r = order[j]
            if img != pos[r] and abs(score[r] - score[i]) > itol[r] + itol[i]:
                bad.append(f"latent {s}: rank {j} is image {img} ({score[i]}), reference {pos[r]} ({score[r]})")
    print(f"  {os.path.basename(os.path.dirname(ckpt))} ({cfg['activation']}, tokens {tokens}): {S} latents, "
          f"{ambiguous} with a firing decision within float32 tolerance of its cut, {len(bad)} problems")
    if ambiguous > S // 10:
        bad.append(f"{ambiguous} ambiguous latents of {S}: the check would be too weak")
    for b in bad[:20]:
        print("   ", b)
    return not bad


CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711])


def heat_pixels(rgb, a, mx):
    """visuals.h's overlay in float32 as render.c computes it, for pixels rgb [..., 3] with
    patch values a [...] (all non-zero)."""
    f32 = np.float32
    t = a.astype(f32) / f32(mx) if mx > 0 else np.zeros(a.shape, f32)
    t = np.clip(t, f32(0), f32(1)).astype(f32)
    alpha = (f32(0.3) + f32(0.45) * t)[..., None]
    stops = np.array([[255, 255, 0], [255, 128, 0], [200, 0, 0]], f32)
    hi = t >= f32(0.5)
    wt = np.where(hi, (t - f32(0.5)) * f32(2), t * f32(2)).astype(f32)[..., None]
    lo_c, hi_c = stops[hi.astype(int)], stops[hi.astype(int) + 1]
    col = lo_c + (hi_c - lo_c) * wt
    return (f32(1) - alpha) * rgb.astype(f32) + alpha * col


def check_pictures(store, ckpt, out, prep):
    top, _ = load(f"{out}/top.safetensors")
    w, cfg = read_ckpt(ckpt)
    x, pos = store_rows(store, "patches")
    P = x.shape[0] // len(pos)
    idx = json.load(open(f"{out}/index.json"))
    gh, gw = idx["grid"]
    bad, n_img, n_heat_pixels = [], 0, 0
    for s in idx["rendered"]:
        lat = json.load(open(f"{out}/latents/{s}/latent.json"))
        mx = top["max_value"][s]
        for e in lat["images"]:
            j, img = e["rank"], e["image"]
            if top["images"][s, j] != img or np.float32(e["score"]) != top["values"][s, j]:
                bad.append(f"latent {s} image {j}: latent.json disagrees with top.safetensors")
            plain = np.asarray(Image.open(f"{out}/latents/{s}/{j}.png").convert("RGB"))
            heat = np.asarray(Image.open(f"{out}/latents/{s}/{j}_heat.png").convert("RGB"))
            ref, _ = load(f"{prep}/{img}.safetensors")
            u8 = np.rint((ref["pixel_values"].astype(np.float64).transpose(1, 2, 0) * CLIP_STD + CLIP_MEAN) * 255)
            h, wd = u8.shape[:2]
            u = -(-224 // min(h, wd))
            if plain.shape != (h * u, wd * u, 3) or np.any(plain != np.kron(u8, np.ones((u, u, 1)))):
                bad.append(f"latent {s} image {j}: {j}.png is not `saev preprocess`'s image upscaled {u}x")
            # Patch values against float64.
            i = int(np.searchsorted(pos, img))
            f, fire, tol, amb = encode(w, cfg, x[i * P:(i + 1) * P])
            a = np.array(e["patches"], np.float64)
            if a.shape != (P,) or not np.all(np.isfinite(a)):
                bad.append(f"latent {s} image {j}: patches not {P} finite numbers")
                continue
            ok = (np.abs(a - f[:, s]) <= tol[:, s] + EPS32 * np.abs(f[:, s])) | amb[:, s]
            if not ok.all():
                bad.append(f"latent {s} image {j}: patch values {a[~ok]} vs {f[~ok, s]}")
            # Heat pixels from those values (patch p covers rows [p_y H / gh, ...) as render.c maps them).
            H, W = plain.shape[:2]
            py = np.arange(H) * gh // H
            px = np.arange(W) * gw // W
            av = a.astype(np.float32)[py[:, None] * gw + px[None, :]]
            zero = av == 0
            if np.any(heat[zero] != plain[zero]):
                bad.append(f"latent {s} image {j}: pixels of zero patches changed")
            v = heat_pixels(plain[~zero], av[~zero], mx)
            n_heat_pixels += int((~zero).sum())
            # lrintf of the float32 value; 1 off only where v is within float32 noise of a .5.
            diff = np.abs(heat[~zero].astype(np.float64) - np.rint(v))
            near_half = np.abs(v - np.floor(v) - 0.5) < 1e-3
            if np.any(diff > near_half):
                bad.append(f"latent {s} image {j}: {(diff > near_half).sum()} heat pixels differ from the formula")
            n_img += 1
    print(f"  {n_img} rendered images, {n_heat_pixels} overlaid pixels checked, {len(bad)} problems")
    for b in bad[:20]:
        print("   ", b)
    return n_img > 0 and n_heat_pixels > 0 and not bad


def label_colour(l):
    if l == 0:
        return np.zeros(3, np.uint8)
    h = (l * 2654435761) & 0xFFFFFFFF
    return np.array([64 + (h >> 24) % 192, 64 + ((h >> 16) & 0xFFFF) % 192, 64 + ((h >> 8) & 0xFFFFFF) % 192], np.uint8)


def check_seg(store, out):
    idx = json.load(open(f"{out}/index.json"))
    gh, gw = idx["grid"]
    labels = []
    for fn in sorted(glob.glob(f"{store}/acts-*.h5")):
        with h5py.File(fn, "r") as f:
            labels.append(f["patch_labels"][:])
    labels = np.concatenate(labels)
    bad, n, distinct = [], 0, set()
    for s in idx["rendered"]:
        lat = json.load(open(f"{out}/latents/{s}/latent.json"))
        for e in lat["images"]:
            seg = np.asarray(Image.open(f"{out}/latents/{s}/{e['seg']}").convert("RGB"))
            plain = np.asarray(Image.open(f"{out}/latents/{s}/{e['png']}").convert("RGB")).astype(np.int64)
            H, W = seg.shape[:2]
            lab = labels[e["image"]].reshape(gh, gw)
            per_pixel = lab[(np.arange(H) * gh // H)[:, None], (np.arange(W) * gw // W)[None, :]]
            colour = np.stack([label_colour(int(l)) for l in range(256)]).astype(np.int64)[per_pixel]
            want = np.where((per_pixel == 0)[..., None], plain, (plain + 3 * colour + 2) // 4)
            distinct.update(int(v) for v in np.unique(lab))
            if np.any(seg != want):
                bad.append(f"latent {s} image {e['rank']}: {e['seg']} differs from patch_labels in {(seg != want).any(axis=2).sum()} pixels")
            n += 1
    print(f"  {n} segmentation images, labels {sorted(distinct)}, {len(bad)} problems")
    for b in bad[:20]:
        print("   ", b)
    return n > 0 and len(distinct) > 1 and not bad


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "make-saes":
        make_saes(sys.argv[2], sys.argv[3])
        ok = True
    elif cmd == "top":
        ok = check_top(*sys.argv[2:6])
    elif cmd == "pictures":
        ok = check_pictures(*sys.argv[2:6])
    elif cmd == "seg":
        ok = check_seg(*sys.argv[2:4])
    else:
        raise SystemExit(f"unknown command {cmd}")
    sys.exit(0 if ok else 1)
