"""probe_check.py: reference checks for tests/test_probe.sh (run with /usr/bin/python3).

  sklearn STORE PROBE_DIR        the probe against scikit-learn's LogisticRegression on the
                                 same rows and regularisation: W, b within 1e-3 relative,
                                 identical held-out predictions, probe.json's confusion
                                 matrix recomputed from them
  same PROBE_A PROBE_B           two probes' W agree within the bound their stopping rule gives (1 vs 2 ranks)
  semantic STORE PROBE_DIR SAE   latent_f1.safetensors against numpy: counts from float64
                                 SAE codes, F1 tables recomputed from the counts
  pick STORE SAE LAYER IMAGE     prints "LATENT PATCH" of the largest code of the image (an
                                 edit target far from any top-k boundary)
  zero PRED_DIR                  a zero edit: predictions and activations identical bit for bit
  edit STORE MODEL SAE PRED_DIR SAE_BLOCK PROBE_BLOCK LATENT PATCH IMAGE
                                 one edit "LATENT=0@patches:PATCH" re-derived in float64 numpy
                                 (codes, x', the CLIP blocks in between) against the saved
                                 activations after the edit
  study STUDY_DIR                study.json's counts and rates recomputed from
                                 study_predictions.safetensors
"""
import glob, json, sys
import numpy as np
import h5py
sys.path.insert(0, __file__.rsplit("/", 1)[0])
from sae_compare import vit_path_bound, load

def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)

def store_layer(store, block):
    files = sorted(glob.glob(store + "/acts-*.h5"))
    acts, labels, plabels = [], [], []
    for fn in files:
        f = h5py.File(fn, "r")
        li = list(f.attrs["layers"]).index(block)
        acts.append(f["activations"][:, li].astype(np.float64))
        labels.append(f["label"][:])
        if "patch_labels" in f:
            plabels.append(f["patch_labels"][:].astype(np.int64))
        has_cls = int(f.attrs["has_cls"])
    return np.concatenate(acts), np.concatenate(labels), (np.concatenate(plabels) if plabels else None), has_cls

def probe_rows(store, pj, meta, images):
    acts, labels, plabels, has_cls = store_layer(store, int(meta["layer"]))
    if meta["target"] == "patch":
        X = acts[images, has_cls:].reshape(-1, acts.shape[-1])
        y = plabels[images].reshape(-1)
    else:
        X = acts[images, 0] if meta["pool"] == "cls" else acts[images, has_cls:].mean(axis=1)
        y = labels[images]
    return X, y

def cmd_sklearn(store, pdir):
    from sklearn.linear_model import LogisticRegression
    t, m = load(pdir + "/probe.safetensors")
    meta = json.loads(m["saev_probe"])
    pj = json.load(open(pdir + "/probe.json"))
    if meta["features"] != "activations":
        fail("sklearn check needs an activations probe")
    Xtr, ytr = probe_rows(store, pj, meta, pj["split"]["train_images"])
    Xte, yte = probe_rows(store, pj, meta, pj["split"]["test_images"])
    lam, N = meta["l2"], len(ytr)
    # our loss: mean CE + lam/2 |W|^2; sklearn's: C sum CE + 1/2 |W|^2; same minimiser for C = 1/(lam N)
    # newton-cg stops on max |gradient| <= tol, as ours does; sklearn's lbfgs stops first on
    # scipy's relative-decrease test (ftol = 64 eps), short of this optimum (1e-3 off here)
    ref = LogisticRegression(C=1.0 / (lam * N), tol=1e-7, max_iter=1000, multi_class="multinomial", solver="newton-cg").fit(Xtr, ytr)
    if ref.n_iter_[0] >= 1000:
        fail("sklearn did not converge")
    if list(ref.classes_) != meta["classes"]:
        fail("classes %s vs sklearn %s" % (meta["classes"], list(ref.classes_)))
    W, b = t["W"].astype(np.float64), t["b"].astype(np.float64)
    eW = np.linalg.norm(W - ref.coef_.T) / np.linalg.norm(ref.coef_)
    eb = np.linalg.norm(b - ref.intercept_) / max(np.linalg.norm(ref.intercept_), 1e-12)
    print("sklearn: %d rows, %d classes, %d sklearn iterations; W rel err %.2e, b rel err %.2e" % (N, len(ref.classes_), ref.n_iter_[0], eW, eb))
    if not (eW <= 1e-3 and eb <= 1e-3):
        fail("weights differ from sklearn by more than 1e-3 relative")
    ours = np.asarray(meta["classes"])[np.argmax(Xte @ W + b, axis=1)]
    theirs = ref.predict(Xte)
    if not np.array_equal(ours, theirs):
        fail("%d of %d held-out predictions differ from sklearn" % (np.sum(ours != theirs), len(ours)))
    K = len(meta["classes"])
    conf = np.zeros((K, K), np.int64)
    idx = {c: i for i, c in enumerate(meta["classes"])}
    for a, p in zip(yte, ours):
        if a in idx:
            conf[idx[a], idx[p]] += 1
    if not np.array_equal(conf, np.asarray(pj["confusion"])):
        fail("probe.json's confusion matrix is not the one of the held-out predictions")
    acc = np.mean(ours == yte)
    if not abs(acc - pj["accuracy"]) <= 1e-12:
        fail("accuracy %r vs recomputed %r" % (pj["accuracy"], acc))
    print("sklearn: %d held-out predictions identical, accuracy %.4f" % (len(ours), acc))

def cmd_same(a, b):
    """Both runs stop with max |grad f| <= g (probe.json). f is lambda-strongly convex in W
    (the L2 term; cross-entropy only adds curvature), so each W is within sqrt(p) g / lambda
    of the optimum in the 2-norm, p the parameter count; plus float32 storage (2^-24 |W|)."""
    ta, ma = load(a + "/probe.safetensors")
    tb, _ = load(b + "/probe.safetensors")
    ja, jb = json.load(open(a + "/probe.json")), json.load(open(b + "/probe.json"))
    lam = json.loads(ma["saev_probe"])["l2"]
    W1, W2 = ta["W"].astype(np.float64), tb["W"].astype(np.float64)
    p = W1.size + ta["b"].size
    bound = np.sqrt(p) * (ja["optimizer"]["max_abs_gradient"] + jb["optimizer"]["max_abs_gradient"]) / lam + 2.0 ** -24 * (np.abs(W1).max() + np.abs(W2).max()) * np.sqrt(W1.size)
    e = np.linalg.norm(W1 - W2)
    print("same: |W_a - W_b| = %.2e (bound %.2e from the stopping rule), |W| = %.2e" % (e, bound, np.linalg.norm(W1)))
    if not e <= bound:
        fail("1-rank and 2-rank probes differ by %.3e > %.3e" % (e, bound))

def sae_codes(sae_path, X):
    """float64 codes, and per row whether the top-k selection is unambiguous under float32
    rounding: the gap between the k-th and (k+1)-th pre-activation must exceed twice the
    float32 error bound of a d-term dot product, gamma_d * sum_i |x_i w_ij| + eps |b_j|."""
    t, m = load(sae_path)
    c = json.loads(m["saev_sae_config"])
    s = c.get("data_scale", 1.0)
    We, be, bd = t["W_enc"].astype(np.float64), t["b_enc"].astype(np.float64), t["b_dec"].astype(np.float64)
    x = X * np.float64(np.float32(s))
    xin = x - bd if c.get("center_input") else x
    h = xin @ We + be
    d = X.shape[1]
    u = 2.0 ** -24
    bound = (d * u / (1 - d * u)) * (np.abs(xin) @ np.abs(We)) + u * np.abs(be)
    if c["activation"] != "top-k":
        fail("the check covers top-k SAEs")
    k = c["k"]
    order = np.argsort(-h, axis=1)
    f = np.zeros_like(h)
    rows = np.arange(len(h))[:, None]
    f[rows, order[:, :k]] = h[rows, order[:, :k]]
    hk, hk1 = h[np.arange(len(h)), order[:, k - 1]], h[np.arange(len(h)), order[:, k]]
    bk, bk1 = bound[np.arange(len(h)), order[:, k - 1]], bound[np.arange(len(h)), order[:, k]]
    clear = (hk - hk1) > 2 * (bk + bk1)
    return f, clear, t, s

def cmd_semantic(store, pdir, sae_path):
    t, m = load(pdir + "/latent_f1.safetensors")
    meta = json.loads(m["saev_probe"])
    pj = json.load(open(pdir + "/probe.json"))
    acts, labels, plabels, has_cls = store_layer(store, int(meta["layer"]))
    tr = pj["split"]["train_images"]
    X = acts[tr, has_cls:].reshape(-1, acts.shape[-1])
    f, clear, _, _ = sae_codes(sae_path, X)
    classes = list(t["classes"])
    K, S = len(classes), f.shape[1]
    if meta["target"] != "patch":
        fail("semantic check written for patch targets")
    y = plabels[tr].reshape(-1)
    fires = f != 0
    tp = np.zeros((S, K), np.int64)
    for j, c in enumerate(classes):
        tp[:, j] = (fires & (y == c)[:, None]).sum(axis=0)
    nf = fires.sum(axis=0)
    sup = np.array([(y == c).sum() for c in classes])
    amb = int((~clear).sum())
    # exact where every row's selection is unambiguous; else each count may differ by the ambiguous rows
    for name, ours, ref in (("tp", t["tp"], tp), ("fires", t["fires"], nf), ("support", t["support"], sup)):
        dmax = int(np.abs(ours - ref).max())
        if dmax > (amb if name != "support" else 0):
            fail("%s differs from numpy by %d (ambiguous rows: %d)" % (name, dmax, amb))
    # precision, recall, F1 recomputed from the saved counts (float32 storage: 2^-24 relative)
    tpc, nfc, supc = t["tp"].astype(np.float64), t["fires"].astype(np.float64), t["support"].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        P = np.where(nfc[:, None] > 0, tpc / nfc[:, None], 0.0)
        R = np.where(supc[None, :] > 0, tpc / supc[None, :], 0.0)
        F = np.where(tpc > 0, 2 * P * R / (P + R), 0.0)
    for name, ours, ref in (("precision", t["precision"], P), ("recall", t["recall"], R), ("f1", t["f1"], F)):
        e = np.abs(ours.astype(np.float64) - ref).max()
        if not e <= 2.0 ** -23:
            fail("%s differs from its definition by %.3e" % (name, e))
    best = pj["semantic"]["best"]
    for j, entry in enumerate(best):
        top = entry["latents"][0]
        if not abs(top["f1"] - F[:, j].max()) <= 2.0 ** -23:
            fail("best latent of class %d has F1 %r, the table's max is %r" % (classes[j], top["f1"], F[:, j].max()))
    print("semantic: %d rows, %d latents x %d classes; counts match numpy (%d ambiguous rows); P/R/F1 and best latents match" % (len(y), S, K, amb))

def cmd_pick(store, sae_path, block, image):
    acts, _, _, has_cls = store_layer(store, int(block))
    f, clear, _, _ = sae_codes(sae_path, acts[int(image), has_cls:])
    f = np.where(clear[:, None], f, 0)
    p, s = np.unravel_index(np.argmax(f), f.shape)
    print(s, p)

def cmd_zero(pdir):
    t, _ = load(pdir + "/predictions.safetensors")
    if not np.array_equal(t["before"], t["after"]):
        fail("a zero edit changed predictions")
    for k in ("activations",):
        a, b = t[k + "_before"], t[k + "_after"]
        if a.tobytes() != b.tobytes():
            fail("a zero edit changed the activations (not bit for bit)")
    print("zero: %d predictions and %d activations unchanged, bit for bit" % (t["before"].size, t["activations_before"].size))

def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b

def clip_block(x, P, l, heads, eps):
    """One transformers CLIP encoder layer in float64 (quick_gelu)."""
    g = lambda n: P["encoder.layers.%d.%s" % (l, n)].astype(np.float64)
    T, D = x.shape
    hd = D // heads
    h = layer_norm(x, g("layer_norm1.weight"), g("layer_norm1.bias"), eps)
    q = h @ g("self_attn.q_proj.weight").T + g("self_attn.q_proj.bias")
    k = h @ g("self_attn.k_proj.weight").T + g("self_attn.k_proj.bias")
    v = h @ g("self_attn.v_proj.weight").T + g("self_attn.v_proj.bias")
    out = np.zeros_like(x)
    for i in range(heads):
        sl = slice(i * hd, (i + 1) * hd)
        s = q[:, sl] @ k[:, sl].T / np.sqrt(hd)
        s = np.exp(s - s.max(-1, keepdims=True))
        out[:, sl] = (s / s.sum(-1, keepdims=True)) @ v[:, sl]
    x = x + out @ g("self_attn.out_proj.weight").T + g("self_attn.out_proj.bias")
    h = layer_norm(x, g("layer_norm2.weight"), g("layer_norm2.bias"), eps)
    h = h @ g("mlp.fc1.weight").T + g("mlp.fc1.bias")
    h = h / (1 + np.exp(-1.702 * h))
    return x + h @ g("mlp.fc2.weight").T + g("mlp.fc2.bias")

def cmd_edit(store, model, sae_path, pdir, sae_block, probe_block, latent, patch, image):
    sae_block, probe_block, latent, patch, image = int(sae_block), int(probe_block), int(latent), int(patch), int(image)
    acts, _, _, has_cls = store_layer(store, sae_block)
    x = acts[image].copy()
    f, clear, st, s = sae_codes(sae_path, x[has_cls:])
    if not clear[patch]:
        fail("the picked patch is ambiguous")
    x[has_cls + patch] += (0.0 - f[patch, latent]) * st["W_dec"][latent].astype(np.float64) / np.float64(np.float32(s))
    P, _ = load(model + "/model.safetensors")
    cfg = json.load(open(model + "/config.json"))
    for l in range(sae_block + 1, probe_block + 1):
        x = clip_block(x, P, l, cfg["num_attention_heads"], cfg["layer_norm_eps"])
    t, _ = load(pdir + "/predictions.safetensors")
    i = list(t["images"]).index(image)
    ours = t["activations_after"][i].astype(np.float64)
    e = np.linalg.norm(ours - x) / np.linalg.norm(x)
    moved = np.linalg.norm(t["activations_after"][i].astype(np.float64) - t["activations_before"][i]) / np.linalg.norm(x)
    # float32 through the edit and (probe_block - sae_block) blocks of width 48 / MLP 96:
    # each GEMM of depth K <= 96 adds <= K 2^-24 ~ 6e-6 relative, a handful in sequence
    print("edit: latent %d on patch %d of image %d, blocks %d..%d: rel err vs float64 %.2e (the edit moved the layer by %.2e)" % (
        latent, patch, image, sae_block + 1, probe_block, e, moved))
    if not e <= 1e-4:
        fail("after-edit activations differ from the float64 re-derivation by %.3e" % e)
    if not moved > 100 * e:
        fail("the edit did not move the activations measurably (%.3e)" % moved)

def cmd_study(sdir):
    t, _ = load(sdir + "/study_predictions.safetensors")
    sj = json.load(open(sdir + "/study.json"))
    lab, before = t["labels"], t["before"]
    pooled = {}
    for ci, entry in enumerate(sj["classes"]):
        c = entry["label"]
        if int(t["classes"][ci]) != c or int(t["latents"][ci][0]) != entry["latent"]:
            fail("class %d: classes/latents do not match study.json" % c)
        holds = (lab == c).any(axis=1)
        for cond in ("target", "random_latent", "random_direction"):
            a = t[cond][ci]
            P = (lab == c) & holds[:, None]
            inb = P & (before == c)
            left = inb & (a != c)
            oth = (~P) & holds[:, None]
            ch = oth & (a != before)
            r = entry[cond]
            got = (r["patches_in_class_before"], r["patches_left_class"], r["other_patches"], r["other_patches_changed"])
            want = (int(inb.sum()), int(left.sum()), int(oth.sum()), int(ch.sum()))
            if got != want:
                fail("class %d %s: study.json counts %s, recomputed %s" % (c, cond, got, want))
            tr = want[1] / want[0] if want[0] else None
            cr = want[3] / want[2] if want[2] else None
            for key, v in (("target_change_rate", tr), ("collateral_rate", cr)):
                if (v is None) != (r[key] is None) or (v is not None and abs(v - r[key]) > 1e-15):
                    fail("class %d %s: %s %r vs recomputed %r" % (c, cond, key, r[key], v))
            p = pooled.setdefault(cond, [0, 0, 0, 0])
            for j in range(4):
                p[j] += want[j]
            # images without the class keep the before predictions
            if not np.array_equal(a[~holds], before[~holds]):
                fail("class %d %s: images without the class changed" % (c, cond))
    for cond, p in pooled.items():
        r = sj["pooled"][cond]
        if (r["patches_in_class_before"], r["patches_left_class"], r["other_patches"], r["other_patches_changed"]) != tuple(p):
            fail("pooled %s counts differ" % cond)
    print("study: %d classes x 3 conditions: counts and rates recomputed from the saved predictions" % len(sj["classes"]))

def cmd_file_path(store, images_dir, image):
    """The image file of store image `image`: the store's image_index into the ADE20K
    listing (root/images/<split>/, sorted by name, as dataset.c lists it)."""
    idx = np.concatenate([h5py.File(f, "r")["image_index"][:] for f in sorted(glob.glob(store + "/acts-*.h5"))])
    print(sorted(glob.glob(images_dir + "/*.jpg"))[int(idx[int(image)])])

def cmd_file_same(pdir, path):
    """The same image edited from the store (entry 0) and from its file (entry 1): the file
    goes decode -> preprocess -> ViT at batch 1, the store's rows came from the same code at
    the activation stage's batch size, so only the GEMM blocking differs: tokens within
    vit_path_bound over the blocks run (0..probe block = 3 blocks, inner dimension <= the
    MLP's 96); the edit moves each by a code of those tokens, to first order as close."""
    t, _ = load(pdir + "/predictions.safetensors")
    j = json.load(open(pdir + "/intervene.json"))
    if list(t["images"]) != [j["images"][0]["image"], -1] or j["images"][1].get("file") != path:
        fail("images %r / json %r: want the store image then the file %s" % (list(t["images"]), j["images"], path))
    bound = vit_path_bound(3, 96)
    for k in ("activations_before", "activations_after"):
        a, b = t[k][0].astype(np.float64), t[k][1].astype(np.float64)
        e = np.linalg.norm(a - b) / np.linalg.norm(a)
        print("file: %s: store vs file relative difference %.2e (bound %.2e)" % (k, e, bound))
        if not e <= bound:
            fail("%s: the file's tokens differ from the store's by %.3e > %.3e" % (k, e, bound))
    for k in ("before", "after"):
        if not np.array_equal(t[k][0], t[k][1]):
            fail("%s: predictions from the file differ from the store image's in %d patches" % (k, int((t[k][0] != t[k][1]).sum())))
    if j["images"][1]["patches_edited"] != j["images"][0]["patches_edited"]:
        fail("the edit touched %d patches of the file and %d of the store image" % (j["images"][1]["patches_edited"], j["images"][0]["patches_edited"]))
    print("file: predictions before and after identical to the store image's")

if __name__ == "__main__":
    cmd = sys.argv[1]
    {"sklearn": cmd_sklearn, "same": cmd_same, "semantic": cmd_semantic, "pick": cmd_pick, "zero": cmd_zero, "edit": cmd_edit,
     "study": cmd_study, "file-path": cmd_file_path, "file-same": cmd_file_same}[cmd](*sys.argv[2:])
