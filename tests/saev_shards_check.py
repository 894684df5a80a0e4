"""saev_shards_check.py: checks for tests/test_saev_shards.sh (run with /usr/bin/python3).

saev's writer is re-enacted here with its own dataclasses and the standard library, as
OSU-NLP-Group/saev@3d73f1f (2026-03-11) src/saev/data/shards.py writes protocol 2.1:
  Metadata.dump   orjson OPT_INDENT_2 of the dataclass (Path -> str, enum -> value); the
                  same bytes as json.dumps(indent=2, ensure_ascii=False) for these types
  Metadata.hash   sha256(orjson OPT_SORT_KEYS, compact)[:8] names the directory
  ShardInfo.dump  orjson OPT_INDENT_2 of [Shard(name, n_examples), ...]
  data            base64(pickle.dumps(cfg.data)), cfg.data a saev.data.datasets dataclass
The saev package is stood in for by a module with the same dataclasses (module path,
class names and fields as datasets.py at that commit), so pickle resolves them as saev would.
And the preprint's layout as saev@97b00d9 (2025-02-19) saev/activations.py writes it.

  layout SHARDS_ROOT KIND ROOT SPLIT MAX_TOKENS   metadata.json, shards.json, the directory
                                                  name and `data` are what saev writes
  preprint SHARDS_DIR OUT_ROOT                    rewrites an export in the preprint layout
                                                  (prints the new directory)
  same-acts STORE_A STORE_B                       activations byte-identical
"""
import base64, dataclasses, enum, hashlib, json, math, os, pathlib, pickle, shutil, sys, tempfile, types

import h5py
import numpy as np


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


# ---- stand-in for saev.data.datasets (fields as at saev@3d73f1f) --------------------------
@dataclasses.dataclass(frozen=True)
class ImgFolder:
    root: pathlib.Path = pathlib.Path("./data/split")


@dataclasses.dataclass(frozen=True)
class ImgSegFolder:
    root: pathlib.Path = pathlib.Path("./data/segdataset")
    split: str = "training"
    labels_csv: str = "labels.csv"
    bg_label: int = 0


def install_saev_stub():
    pkg, data, ds = types.ModuleType("saev"), types.ModuleType("saev.data"), types.ModuleType("saev.data.datasets")
    for cls in (ImgFolder, ImgSegFolder):
        cls.__module__ = "saev.data.datasets"
        setattr(ds, cls.__name__, cls)
    pkg.data, data.datasets = data, ds
    sys.modules.update({"saev": pkg, "saev.data": data, "saev.data.datasets": ds})


class PixelAgg(enum.Enum):
    MAJORITY = "majority"
    PREFER_FG = "prefer-fg"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Metadata:  # shards.py Metadata, field order and defaults
    family: str
    ckpt: str
    layers: tuple
    content_tokens_per_example: int
    cls_token: bool
    d_model: int
    n_examples: int
    max_tokens_per_shard: int
    data: str
    dataset: pathlib.Path
    pixel_agg: PixelAgg = PixelAgg.MAJORITY
    dtype: str = "float32"
    protocol: str = "2.1"

    @classmethod
    def load(cls, shards_dir):  # as saev's Metadata.load
        dct = json.load(open(shards_dir / "metadata.json"))
        dct["layers"] = tuple(dct.pop("layers"))
        dct["dataset"] = pathlib.Path(dct["dataset"])
        dct["pixel_agg"] = PixelAgg(dct["pixel_agg"])
        return cls(**dct)

    @property
    def examples_per_shard(self):
        return self.max_tokens_per_shard // ((self.content_tokens_per_example + int(self.cls_token)) * len(self.layers))


def orjson_like(obj, **kw):
    def default(o):
        if isinstance(o, pathlib.Path):
            return str(o)
        if isinstance(o, enum.Enum):
            return o.value
        raise TypeError(o)
    return json.dumps(obj, default=default, ensure_ascii=False, **kw).encode()


def asdict(md):
    d = {f.name: getattr(md, f.name) for f in dataclasses.fields(md)}
    d["layers"] = list(d["layers"])
    return d


def layout(root, kind, data_root, split, max_tokens):
    install_saev_stub()
    root = pathlib.Path(root)
    dirs = [p for p in root.iterdir() if p.is_dir()]
    if len(dirs) != 1:
        fail(f"{root}: {len(dirs)} shard directories, want 1")
    d = dirs[0]
    md = Metadata.load(d)
    # data: what saev's writer pickles for this data set, byte for byte (Python's pickle)
    want_cfg = ImgSegFolder(root=pathlib.Path(data_root), split=split) if kind == "ade20k" else ImgFolder(root=pathlib.Path(data_root))
    raw = base64.b64decode(md.data)
    cfg = pickle.loads(raw)
    if cfg != want_cfg:
        fail(f"data unpickles to {cfg!r}, want {want_cfg!r}")
    if raw != pickle.dumps(want_cfg):
        fail(f"data is not pickle.dumps({want_cfg!r}):\n  {raw!r}\n  {pickle.dumps(want_cfg)!r}")
    if md.dataset != want_cfg.root:
        fail(f"dataset {md.dataset}, want {want_cfg.root}")
    if md.max_tokens_per_shard != int(max_tokens):
        fail(f"max_tokens_per_shard {md.max_tokens_per_shard}")
    # metadata.json bytes and the directory name, as Metadata.dump / Metadata.hash
    got = (d / "metadata.json").read_bytes()
    want = orjson_like(asdict(md), indent=2)
    if got != want:
        fail(f"metadata.json differs from saev's dump:\n{got.decode()}\n---\n{want.decode()}")
    h = hashlib.sha256(orjson_like(asdict(md), sort_keys=True, separators=(",", ":"))).hexdigest()[:8]
    if d.name != h:
        fail(f"directory {d.name}, saev's Metadata.hash is {h}")
    # shards.json, as ShardInfo.dump of what ShardWriter recorded
    n, eps = md.n_examples, md.examples_per_shard
    shards = [{"name": f"acts{i:06d}.bin", "n_examples": min(eps, n - i * eps)} for i in range(math.ceil(n / eps))]
    got = (d / "shards.json").read_bytes()
    if got != orjson_like(shards, indent=2):
        fail(f"shards.json differs from saev's dump:\n{got.decode()}")
    print(f"layout: {d.name} = saev's hash; metadata.json, shards.json and data ({type(cfg).__name__}) as saev writes them")


@dataclasses.dataclass(frozen=True)
class PreprintMetadata:  # saev@97b00d9 saev/activations.py Metadata
    model_family: str
    model_ckpt: str
    layers: tuple
    n_patches_per_img: int
    cls_token: bool
    d_vit: int
    seed: int
    n_imgs: int
    n_patches_per_shard: int
    data: str


def preprint(shards_dir, out_root):
    src = json.load(open(os.path.join(shards_dir, "metadata.json")))
    md = PreprintMetadata(src["family"], src["ckpt"], tuple(src["layers"]), src["content_tokens_per_example"], src["cls_token"],
                          src["d_model"], 42, src["n_examples"], src["max_tokens_per_shard"],
                          "ImgFolder(root=PosixPath('/data/preprint'))")
    h = hashlib.sha256(json.dumps(dataclasses.asdict(md), sort_keys=True).encode("utf-8")).hexdigest()
    out = os.path.join(out_root, h)
    os.makedirs(out)
    with open(os.path.join(out, "metadata.json"), "w") as fd:  # Metadata.dump
        json.dump(dataclasses.asdict(md), fd, indent=4)
    # ShardWriter: n_imgs_per_shard = n_patches_per_shard // len(layers) // tokens, full-size memmaps
    tokens = md.n_patches_per_img + int(md.cls_token)
    eps = md.n_patches_per_shard // len(md.layers) // tokens
    for i in range(math.ceil(md.n_imgs / eps)):
        name = f"acts{i:06d}.bin"
        shutil.copyfile(os.path.join(shards_dir, name), os.path.join(out, name))
        if os.path.getsize(os.path.join(out, name)) != eps * len(md.layers) * tokens * md.d_vit * 4:
            fail(f"{name}: not the preprint's shard size")
    print(out)


def same_acts(a, b):
    def load(d):
        files = sorted(p for p in os.listdir(d) if p.startswith("acts-") and p.endswith(".h5"))
        return np.concatenate([h5py.File(os.path.join(d, p), "r")["activations"][()] for p in files])
    x, y = load(a), load(b)
    if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
        fail(f"activations of {a} and {b} differ")
    print(f"same-acts: {a} == {b} ({x.shape})")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"layout": layout, "preprint": preprint, "same-acts": same_acts}[cmd](*args)
