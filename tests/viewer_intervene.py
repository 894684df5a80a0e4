"""viewer_intervene.py HOST PORT SAEV CONFIG PROBE STORE TARGET: checks of POST /api/sae/<i>/intervene
(see tests/test_serve_intervene.sh for what and why)."""
import json, struct, subprocess, sys, urllib.request, urllib.error
import numpy as np

host, port, saev, cfg, probe, store, target = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]


def read_safetensors(path):
    """The F32 tensors of a safetensors file (8-byte header length, JSON header, data)."""
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    out = {}
    for k, v in head.items():
        if k == "__metadata__" or v["dtype"] != "F32": continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype="<f4").reshape(v["shape"])
    return out
base = f"http://{host}:{port}/api/"


def call(path, body=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(base + path, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


st, saes = call("saes")
assert st == 200, saes
sae = saes[0]
if not sae["probe"] or sae["probe"]["target"] != target: fail(f"/api/saes does not announce the patch probe: {sae['probe']}")
IMG = 3
st, im = call(f"sae/0/image/{IMG}")
assert st == 200, im
# The first edit (top latents in order, scale -10 then +10) that changes a patch label, so
# that the comparison below covers a changed prediction.
ans = None
for t in im["top"]:
    for a in (-10, 10):
        st, j = call("sae/0/intervene", {"image": IMG, "edits": [{"latent": t["latent"], "scale": a}]})
        if st != 200: fail(f"intervene answered {st}: {j}")
        if j["before"]["labels"] != j["after"]["labels"]:
            lat, scale, ans = t["latent"], a, j
            break
    if ans: break
if not ans and target == "class":  # a class label may not flip: then the top latent at -10x, whose probabilities must move
    lat, scale = im["top"][0]["latent"], -10
    st, ans = call("sae/0/intervene", {"image": IMG, "edits": [{"latent": lat, "scale": scale}]})
if not ans: fail("no edit of the image's top latents by -10x or +10x changes a patch label")
print(f"edit of latent {lat} x{scale} on image {IMG}: {ans['patches_edited']} patches edited, server {ans['ms']:.1f} ms")
out = "runs/iv"
subprocess.run([saev, "intervene", cfg, "--set", f"intervene.data={store}", "--set", "intervene.layer=-2",
                "--set", f"intervene.sae={sae['checkpoint']}", "--set", f"intervene.probe={probe}",
                "--set", f'intervene.edits=["{lat}*{scale}"]', "--set", f"intervene.images=[{IMG}]",
                "--set", f"intervene.out={out}", "--ranks", "1"], check=True, stdout=subprocess.DEVNULL)
ref = json.load(open(f"{out}/intervene.json"))["images"][0]
if ref["image"] != IMG: fail(f"saev intervene ran on image {ref['image']}")
if ans["before"]["labels"] != ref["before"]: fail(f"before labels differ:\n{ans['before']['labels']}\n{ref['before']}")
if ans["after"]["labels"] != ref["after"]: fail(f"after labels differ:\n{ans['after']['labels']}\n{ref['after']}")
if ans["patches_edited"] != ref["patches_edited"]: fail(f"patches edited {ans['patches_edited']} vs {ref['patches_edited']}")
changed = sum(a != b for a, b in zip(ans["before"]["labels"], ans["after"]["labels"]))
if target == "class":
    # The same function (intervene_predict) on the same float32 store tokens, so the
    # probabilities are the same float32 numbers. The only loss is on the way here: cJSON
    # prints a double with 15 significant digits when that reads back within DBL_EPSILON
    # relative (its compare_double), so the bound is 2^-52 |p| per probability.
    ref_p = read_safetensors(f"{out}/predictions.safetensors")
    for key, mine in (("probs_before", ans["before"]["probs"]), ("probs_after", ans["after"]["probs"])):
        theirs = ref_p[key][0, 0].astype(np.float64)
        mine = np.array(mine, dtype=np.float64)
        if not np.all(np.isfinite(mine)) or not np.all(np.abs(mine - theirs) <= np.finfo(np.float64).eps * np.abs(theirs)):
            fail(f"{key} differ from saev intervene: max |diff| {np.max(np.abs(mine - theirs))}")
    print(f"class probabilities identical to saev intervene (before argmax {ans['before']['labels']}, after {ans['after']['labels']})")
print(f"labels identical to saev intervene; {changed} of {len(ref['after'])} patch predictions changed")
if ans["before"]["probs"] == ans["after"]["probs"]: fail("a x-10 edit of the top latent left every probability unchanged")

# Zero edits: after == before bit for bit.
for edits in ([{"latent": lat, "scale": 1}], []):
    st, z = call("sae/0/intervene", {"image": IMG, "edits": edits})
    if st != 200: fail(f"zero edit answered {st}: {z}")
    if z["after"] != z["before"] or z["before"] != ans["before"] or z["patches_edited"] != 0:
        fail(f"zero edit {edits} changed the prediction")
print("zero edits: after == before bit for bit")

# Bad input.
S = sae["d_sae"]
cases = [
    (400, None, b"not json"),
    (400, {"edits": []}, None),
    (400, {"image": IMG, "upload": 1, "edits": []}, None),
    (400, {"image": 1.5, "edits": []}, None),
    (400, {"image": IMG}, None),
    (400, {"image": IMG, "edits": [{"latent": lat, "scale": 10.5}]}, None),
    (400, {"image": IMG, "edits": [{"latent": lat, "scale": 2, "value": 1}]}, None),
    (400, {"image": IMG, "edits": [{"latent": -1, "scale": 2}]}, None),
    (400, {"image": IMG, "edits": [{"latent": lat, "scale": "2"}]}, None),
    (404, {"image": IMG, "edits": [{"latent": S, "scale": 2}]}, None),
    (404, {"image": 10 ** 6, "edits": []}, None),
    (404, {"upload": 999, "edits": []}, None),
]
for want, body, raw in cases:
    st, j = call("sae/0/intervene", body, raw)
    if st != want or "error" not in j: fail(f"{body or raw} gave {st} {j}, expected {want}")
st, j = call(f"sae/{len(saes)}/intervene", {"image": IMG, "edits": []})
if st != 404: fail(f"an unknown SAE gave {st}")
print("bad input: statuses ok")
