"""store_check.py: h5py/numpy checks of activation stores for tests/test_store.sh.

Run with Debian's /usr/bin/python3 (h5py, numpy). Expected values come from the closed
form of worker/stage_store_selftest.c:
    act(i, l, t, k) = (((131 i + 31 l + 7 t + 3 k) mod 1001) - 500) / 64
label = i mod 7, image_index = i, patch label p = (i + p) mod 5, stored layers 1, 3, 5, ...
and from saev's protocol-2.1 layout (launcher/cmd_export_saev.c cites the source).

  same A B                    every dataset and attribute of two stores equal, byte for byte
  layout DIR DTYPE N L P D IPF SKIP   shapes, dtypes, attributes and values as h5py sees them
  incomplete DIR              no file carries complete=1 and some status is 0
  export STORE EXPORT MAXTOK  saev shard bytes at known offsets + metadata/shards json
  roundtrip A B               activations/patch labels of A equal B's (B imported from A's export)
  checksums DIR               every written image's stored checksum per layer equals Fletcher-32
                              of its stored bytes, computed here from the definition in store.h
  corrupt DIR IMAGE LAYER     flips one byte inside that image's slice of that layer (located
                              through HDF5's chunk index) and prints the file and HDF5 chunk
"""
import glob
import json
import os
import sys

import h5py
import numpy as np


def act(i, l, t, k):
    return (((131 * i + 31 * l + 7 * t + 3 * k) % 1001) - 500) / 64.0


def closed_form(images, L, T, D):
    i = np.asarray(images, dtype=np.int64)[:, None, None, None]
    l = np.arange(L)[None, :, None, None]
    t = np.arange(T)[None, None, :, None]
    k = np.arange(D)[None, None, None, :]
    return ((((131 * i + 31 * l + 7 * t + 3 * k) % 1001) - 500) / 64.0).astype(np.float64)


def files(d):
    fs = sorted(glob.glob(os.path.join(d, "acts-*.h5")))
    assert fs, f"no acts-*.h5 in {d}"
    return fs


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def same(a, b):
    fa, fb = files(a), files(b)
    if [os.path.basename(x) for x in fa] != [os.path.basename(x) for x in fb]:
        fail(f"file lists differ: {fa} vs {fb}")
    for x, y in zip(fa, fb):
        with h5py.File(x, "r") as p, h5py.File(y, "r") as q:
            if sorted(p.keys()) != sorted(q.keys()):
                fail(f"{x}: datasets {sorted(p.keys())} vs {sorted(q.keys())}")
            for name in p:
                if isinstance(p[name], h5py.Datatype):
                    continue
                u, v = p[name], q[name]
                if u.dtype != v.dtype or u.shape != v.shape:
                    fail(f"{x}:{name}: {u.dtype}{u.shape} vs {v.dtype}{v.shape}")
                # byte-for-byte: compare the raw bytes, not values (NaN-safe, -0 vs 0)
                if u[()].tobytes() != v[()].tobytes():
                    fail(f"{x}:{name} differs")
            ka, kb = dict(p.attrs), dict(q.attrs)
            if sorted(ka) != sorted(kb):
                fail(f"{x}: attributes {sorted(ka)} vs {sorted(kb)}")
            for key in ka:
                if not np.array_equal(np.asarray(ka[key]), np.asarray(kb[key])):
                    fail(f"{x}: attribute {key}: {ka[key]!r} vs {kb[key]!r}")
    print(f"same: {a} == {b} ({len(fa)} files)")


def layout(d, dtype, n, L, P, D, ipf, skip):
    n, L, P, D, ipf, skip = map(int, (n, L, P, D, ipf, skip))
    T = P + 1
    want_dtype = {"float32": np.float32, "float16": np.float16, "bfloat16": np.float32}[dtype]
    tol = {"float32": 0.0, "float16": 0.0, "bfloat16": 2.0**-8}[dtype]
    fs = files(d)
    n_files = 1 if ipf == 0 or ipf >= n else -(-n // ipf)
    if len(fs) != n_files:
        fail(f"{len(fs)} files, want {n_files}")
    for f_i, path in enumerate(fs):
        with h5py.File(path, "r") as f:
            first = f_i * ipf if n_files > 1 else 0
            nf = min(n, first + (ipf if n_files > 1 else n)) - first
            a = f["activations"]
            if a.shape != (nf, L, T, D) or a.dtype != want_dtype:
                fail(f"{path}: activations {a.dtype}{a.shape}, want {np.dtype(want_dtype)}{(nf, L, T, D)}")
            if a.chunks[1:] != (1, T, D):
                fail(f"{path}: chunks {a.chunks}, want (c, 1, {T}, {D})")
            if dtype == "bfloat16":
                if "bfloat16" not in f or f["bfloat16"].dtype.itemsize != 4 or a.id.get_type().get_size() != 2:
                    fail(f"{path}: bfloat16 must be a committed 2-byte float type")
            at = f.attrs
            want = {"model_family": "clip", "model": "selftest-vit", "checkpoint_digest": "sha256:selftest",
                    "dtype": dtype, "tokens": T, "has_cls": 1, "patches": P, "d_model": D, "n_images": n,
                    "images_per_file": ipf, "patch_labels": 1, "file_index": f_i, "n_files": n_files,
                    "first_image": first, "n_images_in_file": nf, "complete": 1,
                    "dataset": "/synthetic/closed-form", "preprocessing": "synthetic (no pixels)"}
            for key, v in want.items():
                got = at.get(key)
                if isinstance(got, bytes):
                    got = got.decode()
                if got != v:
                    fail(f"{path}: attribute {key} = {got!r}, want {v!r}")
            if list(at["layers"]) != [2 * l + 1 for l in range(L)]:
                fail(f"{path}: layers {list(at['layers'])}")
            if not at["token_layout"].startswith("CLS at token 0, then"):
                fail(f"{path}: token_layout {at['token_layout']!r}")
            if not isinstance(at["config"], str) or not at["saev_version"]:
                fail(f"{path}: config/saev_version missing")
            imgs = np.arange(first, first + nf)
            bad = (imgs % skip == skip - 1) if skip else np.zeros(nf, bool)
            want_acts = closed_form(imgs, L, T, D)
            want_acts[bad] = 0.0
            got = a[()].astype(np.float64)
            err = np.abs(got - want_acts) - tol * np.abs(want_acts)
            if not err.max() <= 0:  # NaN anywhere makes max NaN, and NaN <= 0 is False
                fail(f"{path}: activations off the closed form by {err.max()}")
            if not np.array_equal(f["image_index"][()], imgs):
                fail(f"{path}: image_index")
            if not np.array_equal(f["label"][()], imgs % 7):
                fail(f"{path}: label")
            pl = (imgs[:, None] + np.arange(P)[None, :]) % 5
            if not np.array_equal(f["patch_labels"][()], pl):
                fail(f"{path}: patch_labels")
            if not np.array_equal(f["status"][()], np.where(bad, 2, 1)):
                fail(f"{path}: status {f['status'][()]}")
            reasons = [r.decode() for r in f["skip_reason"][()]]
            for j, i in enumerate(imgs):
                w = f"synthetic bad image {i}" if bad[j] else ""
                if reasons[j] != w:
                    fail(f"{path}: skip_reason[{j}] = {reasons[j]!r}, want {w!r}")
    print(f"layout: {d} ok ({dtype}, {n_files} files)")


def incomplete(d):
    pending = 0
    for path in files(d):
        with h5py.File(path, "r") as f:
            if f.attrs.get("complete") == 1:
                fail(f"{path} is marked complete after a crash")
            pending += int((f["status"][()] == 0).sum())
    if pending == 0:
        fail("no image pending after a crash")
    print(f"incomplete: {d}: {pending} images pending")


def export(store, out, max_tokens):
    max_tokens = int(max_tokens)
    md = json.load(open(os.path.join(out, "metadata.json")))
    sh = json.load(open(os.path.join(out, "shards.json")))
    with h5py.File(files(store)[0], "r") as f:
        at = dict(f.attrs)
    L, T, D, n, P = len(at["layers"]), int(at["tokens"]), int(at["d_model"]), int(at["n_images"]), int(at["patches"])
    # Field names and values of saev's Metadata (src/saev/data/shards.py).
    want = {"family": at["model_family"], "ckpt": at["model"], "layers": [int(x) for x in at["layers"]],
            "content_tokens_per_example": P, "cls_token": True, "d_model": D, "n_examples": n,
            "max_tokens_per_shard": max_tokens, "dataset": at["dataset"], "pixel_agg": "majority",
            "dtype": "float32", "protocol": "2.1"}
    for k, v in want.items():
        if md.get(k) != v:
            fail(f"metadata.json {k} = {md.get(k)!r}, want {v!r}")
    if set(md) != set(want) | {"data"}:
        fail(f"metadata.json keys {sorted(md)}")
    eps = max_tokens // (T * L)  # saev: examples_per_shard
    n_shards = -(-n // eps)
    if [s["name"] for s in sh] != [f"acts{i:06d}.bin" for i in range(n_shards)]:
        fail(f"shards.json names {sh}")
    if [s["n_examples"] for s in sh] != [min(eps, n - i * eps) for i in range(n_shards)]:
        fail(f"shards.json n_examples {sh}")
    status = np.concatenate([h5py.File(p, "r")["status"][()] for p in files(store)])
    dt = at["dtype"]
    tol = 2.0**-8 if dt == "bfloat16" else 0.0
    # Bytes at known offsets (saev protocol section 4.2), straight from the files.
    checked = 0
    for i in range(n):
        for l in range(L):
            for t in (0, T - 1):
                for k in (0, D - 1):
                    shard, ex = divmod(i, eps)
                    off = ((ex * L * T) + (l * T) + t) * D * 4 + k * 4
                    with open(os.path.join(out, f"acts{shard:06d}.bin"), "rb") as fh:
                        fh.seek(off)
                        got = float(np.frombuffer(fh.read(4), "<f4")[0])
                    w = 0.0 if status[i] == 2 else act(i, l, t, k)
                    if not abs(got - w) <= tol * abs(w):  # fails on NaN
                        fail(f"image {i} layer {l} token {t} dim {k} at {off}: {got} != {w}")
                    checked += 1
    for s in range(n_shards):
        size = os.path.getsize(os.path.join(out, f"acts{s:06d}.bin"))
        if size != eps * L * T * D * 4:
            fail(f"acts{s:06d}.bin is {size} bytes, saev memmaps {eps * L * T * D * 4}")
    # Whole-array view as saev's reader memmaps it.
    for s in range(n_shards):
        mm = np.memmap(os.path.join(out, f"acts{s:06d}.bin"), dtype=np.float32, mode="r", shape=(eps, L, T, D))
        imgs = np.arange(s * eps, min(n, (s + 1) * eps))
        w = closed_form(imgs, L, T, D)
        w[status[imgs] == 2] = 0
        if not (np.abs(mm[: len(imgs)] - w) - tol * np.abs(w)).max() <= 0:  # fails on NaN
            fail(f"shard {s} differs from the closed form")
    lab = np.fromfile(os.path.join(out, "labels.bin"), dtype=np.uint8).reshape(n, P)
    if not np.array_equal(lab, (np.arange(n)[:, None] + np.arange(P)[None, :]) % 5):
        fail("labels.bin")
    print(f"export: {out} ok ({n_shards} shards, {checked} values at known offsets)")


def roundtrip(a, b):
    def load(d, name):
        return np.concatenate([h5py.File(p, "r")[name][()] for p in files(d)])
    for name in ("activations", "patch_labels"):
        x, y = load(a, name), load(b, name)
        if x.dtype != y.dtype or x.tobytes() != y.tobytes():
            fail(f"round trip: {name} differs")
    print(f"roundtrip: {a} == {b}")


def fletcher32(b):
    """Fletcher-32 as store.h defines it: little-endian 16-bit words (an odd last byte is
    a word of its own), c0 += w, c1 += c0, both mod 65535; result c1 << 16 | c0. Plain
    Python integers (no overflow), so this is an independent reference."""
    w = np.frombuffer(b[: len(b) // 2 * 2], dtype="<u2").astype(np.int64)
    if len(b) % 2:
        w = np.append(w, b[-1])
    c0 = np.cumsum(w) % 65535  # c0 after each word (sums of non-negative ints: exact in int64 for < 2^47 words)
    # c1 = sum over words of c0 (mod 65535); c0 values are already reduced, which is the same mod 65535.
    c1 = int(c0.sum()) % 65535 if len(w) else 0
    c0 = int(c0[-1]) if len(w) else 0
    return (c1 << 16) | c0


def checksums(d):
    n_checked = 0
    for path in files(d):
        with h5py.File(path, "r") as f:
            if "checksum" not in f:
                fail(f"{path}: no checksum dataset")
            acts, sums, status = f["activations"], f["checksum"][()], f["status"][()]
            raw_type = acts.id.get_type()
            for i in range(acts.shape[0]):
                for l in range(acts.shape[1]):
                    if status[i] != 1:
                        if sums[i, l] != 0:
                            fail(f"{path}: image {i} not written but checksum {sums[i, l]:#x}")
                        continue
                    buf = np.empty(acts.shape[2:], dtype=np.uint16 if raw_type.get_size() == 2 else np.float32)
                    acts.id.read(h5py.h5s.create_simple(buf.shape), _hyperslab(acts, i, l), buf, mtype=raw_type)
                    want = fletcher32(buf.tobytes())
                    if int(sums[i, l]) != want:
                        fail(f"{path}: image {i} layer {l}: stored checksum {int(sums[i, l]):#010x}, Fletcher-32 {want:#010x}")
                    n_checked += 1
    print(f"checksums: {d}: {n_checked} image-layer checksums equal the reference")


def _hyperslab(ds, i, l):
    sp = ds.id.get_space()
    sp.select_hyperslab((i, l, 0, 0), (1, 1) + ds.shape[2:])
    return sp


def corrupt(d, image, layer):
    image, layer = int(image), int(layer)
    for path in files(d):
        with h5py.File(path, "r") as f:
            first, n = int(f.attrs["first_image"]), int(f.attrs["n_images_in_file"])
            if not first <= image < first + n:
                continue
            acts = f["activations"]
            row = image - first
            chunk = acts.chunks
            info = acts.id.get_chunk_info_by_coord((row // chunk[0] * chunk[0], layer, 0, 0))
            es = acts.dtype.itemsize if acts.id.get_type().get_size() != 2 else 2
            slice_bytes = acts.shape[2] * acts.shape[3] * es
            # chunk [c, 1, T, D]: the image's slice is at (row mod c) * slice_bytes; flip a byte in its middle.
            off = info.byte_offset + (row % chunk[0]) * slice_bytes + slice_bytes // 2
        with open(path, "r+b") as fh:
            fh.seek(off)
            b = fh.read(1)
            fh.seek(off)
            fh.write(bytes([b[0] ^ 0xFF]))
        print(f"{path} {row // chunk[0] * chunk[0]}")
        return
    fail(f"image {image} not in {d}")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"same": same, "layout": layout, "incomplete": incomplete, "export": export, "roundtrip": roundtrip, "checksums": checksums,
     "corrupt": corrupt}[cmd](*args)
