"""saev_pt_write.py OUT_DIR: writes saev `sae.pt` checkpoints with torch exactly as saev's
own dump functions do, and next to each the reference a test compares against (run with
/usr/bin/python3; Debian's python3-torch). Used by tests/test_saev_pt.c.

Eras, each following saev's code (github.com/OSU-NLP-Group/saev):
  preprint  saev@97b00d9 (2025-02-19) saev/nn.py dump(): json.dumps(vars(cfg)) + "\\n", then
            torch.save(sae.state_dict(), fd). cfg is config.SparseAutoencoder (d_vit,
            exp_factor, sparsity_coeff, n_reinit_samples, ghost_grads,
            remove_parallel_grads, normalize_w_dec, seed). The module defines W_enc [d,S],
            b_enc, W_dec [S,d], b_dec in that order; ReLU of (x - b_dec) W_enc + b_enc.
  current   saev@3d73f1f (2026-03-11) src/saev/nn/modeling.py dump(): orjson (compact) of
            {"schema": 5, "cfg": asdict(cfg) with cfg["activation"] =
            _serialize_dataclass(activation), "commit", "lib"} + "\\n", then torch.save of
            the state dict. The module defines W_dec, b_dec, then W_enc =
            Parameter(W_dec.data.T.clone()) (so W_enc is stored column-major), b_enc, and
            the activation module (BatchTopK registers buffer `threshold`, a 0-d tensor).
            Encoding is act(x W_enc + b_enc); eval-mode BatchTopK is x if x > threshold
            (threshold > 0) else x if x > 0. Matryoshka is saev's training objective
            (objectives.Matryoshka, n_prefixes): its sae.pt is the plain SAE it trained.

Training is stood in for by in-place random updates (as Adam's are), which keep the
tensors' strides. Each case also gets CASE.ref.safetensors: the original tensors, a batch
x [B,d] (float32), the float64 numpy codes f_ref [B,S] and their bound tol [B,S]:
  tol = 1.01 (d+2) u (sum_i |x_i - c b_dec_i| |W_enc_ij| + |b_enc_j|),  u = 2^-24,
the float32 rounding bound of a length-d dot product plus bias (gamma_{d+1}) and of the
centring subtraction, in any summation order. Cases are drawn until every selection
(ReLU sign, top-k rank k vs k+1, threshold) is decided by more than the bound, so the
active sets must agree exactly. Malformed files for the refusal checks are written too.
"""
import collections, dataclasses, io, json, os, sys, zipfile
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sae_compare import save  # noqa: E402

U = 2.0 ** -24


# ---- preprint: saev@97b00d9 saev/config.py SparseAutoencoder, saev/nn.py ----------------
@dataclasses.dataclass(frozen=True)
class PreprintConfig:
    d_vit: int = 1024
    exp_factor: int = 16
    sparsity_coeff: float = 4e-4
    n_reinit_samples: int = 1024 * 16 * 32
    ghost_grads: bool = False
    remove_parallel_grads: bool = True
    normalize_w_dec: bool = True
    seed: int = 0


class PreprintSAE(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d_sae = cfg.d_vit * cfg.exp_factor
        self.cfg = cfg
        self.W_enc = torch.nn.Parameter(torch.nn.init.kaiming_uniform_(torch.empty(cfg.d_vit, d_sae)))
        self.b_enc = torch.nn.Parameter(torch.zeros(d_sae))
        self.W_dec = torch.nn.Parameter(torch.nn.init.kaiming_uniform_(torch.empty(d_sae, cfg.d_vit)))
        self.b_dec = torch.nn.Parameter(torch.zeros(cfg.d_vit))


def preprint_dump(fpath, sae):
    kwargs = vars(sae.cfg)
    with open(fpath, "wb") as fd:
        kwargs_str = json.dumps(kwargs)
        fd.write((kwargs_str + "\n").encode("utf-8"))
        torch.save(sae.state_dict(), fd)


# ---- current: saev@3d73f1f src/saev/nn/modeling.py ---------------------------------------
@dataclasses.dataclass(frozen=True)
class NoSparsity:
    key: str = "no-sparsity"


@dataclasses.dataclass(frozen=True)
class L1Sparsity:
    key: str = "l1-sparsity"
    coeff: float = 1e-4


@dataclasses.dataclass(frozen=True)
class NoAux:
    key: str = "no-aux"


@dataclasses.dataclass(frozen=True)
class AuxK:
    key: str = "auxk"
    k_aux: int = 512
    alpha: float = 1 / 32


@dataclasses.dataclass(frozen=True)
class Relu:
    key: str = "relu"
    sparsity: object = L1Sparsity(coeff=4e-4)
    aux: object = NoAux()


@dataclasses.dataclass(frozen=True)
class TopK:
    key: str = "top-k"
    top_k: int = 32
    sparsity: object = NoSparsity()
    aux: object = AuxK()


@dataclasses.dataclass(frozen=True)
class BatchTopK:
    key: str = "batch-top-k"
    top_k: int = 32
    sparsity: object = NoSparsity()
    momentum: float = 0.1
    aux: object = AuxK()


@dataclasses.dataclass(frozen=True)
class SparseAutoencoderConfig:
    d_model: int = 1024
    d_sae: int = 1024 * 16
    activation: object = TopK()
    reinit_blend: float = 0.8
    reinit_enc_dec_tranpose: bool = True
    remove_parallel_grads: bool = True
    normalize_w_dec: bool = True


class BatchTopKActivation(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("threshold", torch.tensor(0.0))


class CurrentSAE(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.W_dec = torch.nn.Parameter(torch.nn.init.kaiming_uniform_(torch.empty(cfg.d_sae, cfg.d_model)))
        self.b_dec = torch.nn.Parameter(torch.zeros(cfg.d_model))
        with torch.no_grad():
            self.W_dec.data /= torch.norm(self.W_dec.data, dim=1, keepdim=True)
        self.W_enc = torch.nn.Parameter(self.W_dec.data.T.clone())
        self.b_enc = torch.nn.Parameter(torch.zeros(cfg.d_sae))
        self.activation = BatchTopKActivation(cfg.activation) if isinstance(cfg.activation, BatchTopK) else torch.nn.Module()


def _serialize_dataclass(obj):
    return {"cls": obj.__class__.__name__, "params": {f.name: _serialize_value(getattr(obj, f.name)) for f in dataclasses.fields(obj)}}


def _serialize_value(v):
    if dataclasses.is_dataclass(v):
        return _serialize_dataclass(v)
    if isinstance(v, (tuple, list)):
        return [_serialize_value(x) for x in v]
    if isinstance(v, dict):
        return {k: _serialize_value(x) for k, x in v.items()}
    return v


def current_dump(fpath, sae):
    cfg_dict = dataclasses.asdict(sae.cfg)
    cfg_dict["activation"] = _serialize_dataclass(sae.cfg.activation)
    header = {"schema": 5, "cfg": cfg_dict, "commit": "3d73f1f7122738563404e4c50a98d897aa18a7d0", "lib": "1.0.0"}
    with open(fpath, "wb") as fd:
        # helpers.jdump(header, fd, option=orjson.OPT_APPEND_NEWLINE): orjson is compact
        fd.write(json.dumps(header, separators=(",", ":")).encode() + b"\n")
        torch.save(sae.state_dict(), fd)


# ---- the reference ----------------------------------------------------------------------
def encode_ref(x, t, center, kind, k, threshold, mu=None, sigma=None):
    """float64 codes and their float32 rounding bound; None when a selection is too close.
    With mu, sigma the SAE sees (x - mu) / sigma, as the preprint's loader fed it."""
    x = x.astype(np.float64)
    W, be, bd = (t[n].astype(np.float64) for n in ("W_enc", "b_enc", "b_dec"))
    xs = x if mu is None else (x - mu.astype(np.float64)) / float(sigma)
    xc = xs - bd if center else xs
    h = xc @ W + be
    tol = 1.01 * (x.shape[1] + 2) * U * (np.abs(xc) @ np.abs(W) + np.abs(be))
    if mu is not None:
        # saev-c computes fl(x * fl(1/sigma)) and folds s*mu into the biases: at most
        # 4 roundings per input element, of |x/sigma|, |mu/sigma| and |b_dec| at most
        e = 4 * U * (np.abs(x / sigma) + np.abs(mu / sigma) + np.abs(bd))
        tol = tol + 1.01 * (e @ np.abs(W))
    if kind == "relu" or (kind == "batch-top-k" and threshold <= 0):
        if (np.abs(h) <= tol).any():
            return None
        f = np.where(h > 0, h, 0.0)
    elif kind == "batch-top-k":
        if (np.abs(h - threshold) <= tol).any():
            return None
        f = np.where(h > threshold, h, 0.0)
    else:
        order = np.argsort(-h, axis=1)
        rows = np.arange(h.shape[0])
        hk, hk1 = h[rows, order[:, k - 1]], h[rows, order[:, k]]
        tk, tk1 = tol[rows, order[:, k - 1]], tol[rows, order[:, k]]
        if (hk - hk1 <= tk + tk1).any():
            return None
        f = np.zeros_like(h)
        f[rows[:, None], order[:, :k]] = h[rows[:, None], order[:, :k]]
    return f, tol


def perturb_(sae, gen):
    """Stands in for training: in-place updates (strides kept, as Adam's)."""
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))


def make_case(out, name, era, kind, d, S, k=0, B=40, center=False, threshold=None, seed=0, scaled=False):
    for attempt in range(200):
        gen = torch.Generator().manual_seed(1000 * seed + attempt)
        torch.manual_seed(1000 * seed + attempt)
        if era == "preprint":
            sae = PreprintSAE(PreprintConfig(d_vit=d, exp_factor=S // d, sparsity_coeff=4e-4, n_reinit_samples=0, seed=seed))
        else:
            act = {"relu": Relu(sparsity=L1Sparsity(coeff=4e-4)), "top-k": TopK(top_k=k), "batch-top-k": BatchTopK(top_k=k, momentum=0.1)}[kind]
            sae = CurrentSAE(SparseAutoencoderConfig(d_model=d, d_sae=S, activation=act))
        perturb_(sae, gen)
        if threshold is not None:
            sae.activation.threshold.fill_(threshold)
        t = {n: p.detach().contiguous().numpy().astype(np.float32) for n, p in sae.named_parameters()}
        mu = sigma = None
        if scaled:  # the preprint's scale_mean / scale_norm: a data mean and a norm scalar
            mu = (torch.randn(d, generator=gen) * 3.0).numpy().astype(np.float32)
            sigma = np.float32(2.5 + torch.rand(1, generator=gen).item())
        x = (torch.randn(B, d, generator=gen) * 2.0).numpy().astype(np.float32)
        if scaled:
            x = (x * sigma + mu).astype(np.float32)
        r = encode_ref(x, t, center, kind, k, threshold if threshold is not None else 0.0, mu, sigma)
        if r is None:
            continue
        f, tol = r
        (preprint_dump if era == "preprint" else current_dump)(f"{out}/{name}.pt", sae)
        if scaled:  # as saev's preprint loads them: torch.load(scale_mean), torch.load(scale_norm).item()
            torch.save(torch.from_numpy(mu), f"{out}/{name}.mean.pt")
            torch.save(torch.tensor(float(sigma)), f"{out}/{name}.scalar.pt")
        ref = dict(t)
        ref.update(x=x, f_ref=f, tol=tol)
        if threshold is not None:
            ref["threshold"] = np.array([threshold], np.float32)
        save(f"{out}/{name}.ref.safetensors", ref, exact=True)
        return sae
    raise SystemExit(f"{name}: no draw with every selection decided by more than the bound")


def bad_files(out, good):
    """Files saev-c must refuse, each with the reason in its name."""
    raw = open(good, "rb").read()
    nl = raw.index(b"\n") + 1
    hdr, z = raw[:nl], raw[nl:]
    open(f"{out}/bad_truncated.pt", "wb").write(raw[: nl + len(z) // 2])
    open(f"{out}/bad_noheader.pt", "wb").write(z)
    h = json.loads(hdr)
    h["schema"] = 9
    open(f"{out}/bad_schema.pt", "wb").write(json.dumps(h).encode() + b"\n" + z)
    h = json.loads(hdr)
    h["cfg"]["d_sae"] += 1
    open(f"{out}/bad_shape.pt", "wb").write(json.dumps(h).encode() + b"\n" + z)
    # the same archive with its entries deflated
    src = zipfile.ZipFile(io.BytesIO(z))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    open(f"{out}/bad_compressed.pt", "wb").write(hdr + buf.getvalue())
    # a pickle that names something other than tensors (a whole object, not a state dict)
    buf = io.BytesIO()
    torch.save({"W_enc": torch.zeros(2, 2), "extra": collections.Counter("ab")}, buf)
    open(f"{out}/bad_global.pt", "wb").write(hdr + buf.getvalue())


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    d, S = 24, 96
    make_case(out, "preprint_relu", "preprint", "relu", d, S, center=True, seed=1)
    make_case(out, "current_relu", "current", "relu", d, S, seed=2)
    make_case(out, "current_topk", "current", "top-k", d, S, k=6, seed=3)
    make_case(out, "current_batchtopk", "current", "batch-top-k", d, S, k=6, threshold=0.75, seed=4)
    make_case(out, "current_batchtopk_untrained", "current", "batch-top-k", d, S, k=6, threshold=0.0, seed=5)
    # Matryoshka (saev objectives.Matryoshka): a TopK SAE trained under that objective
    make_case(out, "current_matryoshka_topk", "current", "top-k", d, S, k=8, seed=6)
    # the preprint's data scaling (x - mean) / scalar, folded in by import-sae; and the same
    # fold for an uncentred encoder
    make_case(out, "preprint_relu_scaled", "preprint", "relu", d, S, center=True, seed=7, scaled=True)
    make_case(out, "current_topk_scaled", "current", "top-k", d, S, k=6, seed=8, scaled=True)
    bad_files(out, f"{out}/current_topk.pt")


if __name__ == "__main__":
    main()
