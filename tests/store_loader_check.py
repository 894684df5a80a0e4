"""store_loader_check.py: checks for tests/test_sae_store.sh (run with /usr/bin/python3).

Reads the dumps of `saev-worker data-dump` (PREFIX.rank<r>.safetensors: ids [batches, local],
rows [batches, local, d]) of a store written by `saev-worker store-selftest`, whose values
are the closed form act(i, l, t, k) = (((131 i + 31 l + 7 t + 3 k) mod 1001) - 500) / 64
(worker/stage_store_selftest.c).

  closed PREFIX RANKS IMAGES SKIP LAYER_POS TOK0 NTOK [ordered|epoch]
      rows equal the closed form of their ids (row id = used image * NTOK + token);
      ordered: ids are 0, 1, 2, ... (mod N); epoch: every N consecutive positions are a
      permutation of the N rows (each row once per epoch), and not the identity
  ranks PREFIX_A RANKS_A PREFIX_B RANKS_B
      per global batch, the ranks' shares concatenated in rank order are the same rows
  offset PREFIX_FULL PREFIX_PART RANKS FROM
      the part (dumped from batch FROM, as a resumed run starts) equals the full dump's
      batches FROM.. (ids and rows, bit for bit)
  reads PREFIX RANKS N W B FROM BATCHES
      no read amplification: the ranks' `rows_read` sum to the rows of the windows the
      dumped batches touch (each row read once, not once per rank), and each rank read
      its 1/RANKS of them (within a row per window: the pieces are cut at row boundaries)
      (N rows per epoch, W = shuffle window, B = batch, dump of BATCHES batches from FROM)
"""
import sys
import numpy as np
sys.path.insert(0, __file__.rsplit("/", 1)[0])
from sae_compare import load

def dump(prefix, ranks):
    parts = [load(f"{prefix}.rank{r}.safetensors")[0] for r in range(ranks)]
    return np.concatenate([p["ids"] for p in parts], 1), np.concatenate([p["rows"] for p in parts], 1)

def main():
    cmd = sys.argv[1]
    if cmd == "closed":
        prefix, ranks, n_img, skip, lpos, tok0, ntok, mode = sys.argv[2], *map(int, sys.argv[3:9]), sys.argv[9]
        ids, rows = dump(prefix, ranks)
        used = [i for i in range(n_img) if not (skip > 0 and i % skip == skip - 1)]
        n = len(used) * ntok
        flat, d = ids.reshape(-1), rows.shape[-1]
        img = np.array(used)[flat // ntok]
        t = tok0 + flat % ntok
        k = np.arange(d)
        want = (((131 * img[:, None] + 31 * lpos + 7 * t[:, None] + 3 * k[None, :]) % 1001) - 500) / 64.0
        err = np.abs(rows.reshape(-1, d) - want).max()
        print(f"  {flat.size} rows, {n} per epoch, max |row - closed form| = {err:g}")
        ok = err == 0 and flat.min() >= 0 and flat.max() < n
        if mode == "ordered":
            ok &= bool((flat == np.arange(flat.size) % n).all())
            print(f"  ids in store order: {ok}")
        else:
            for e in range(flat.size // n):
                seg = flat[e * n:(e + 1) * n]
                perm = bool((np.sort(seg) == np.arange(n)).all())
                ident = bool((seg == np.arange(n)).all())
                print(f"  epoch {e}: every row once {perm}, shuffled {not ident}")
                ok &= perm and not ident
            if flat.size >= 2 * n:
                ok &= not (flat[:n] == flat[n:2 * n]).all()
        return 0 if ok else 1
    if cmd == "ranks":
        ia, ra = dump(sys.argv[2], int(sys.argv[3]))
        ib, rb = dump(sys.argv[4], int(sys.argv[5]))
        ok = ia.shape == ib.shape and (ia == ib).all() and (ra == rb).all()
        print(f"  {ia.shape[0]} batches: {sys.argv[3]} vs {sys.argv[5]} ranks give the same rows per batch: {bool(ok)}")
        return 0 if ok else 1
    if cmd == "offset":
        full_i, full_r = dump(sys.argv[2], int(sys.argv[4]))
        part_i, part_r = dump(sys.argv[3], int(sys.argv[4]))
        s = int(sys.argv[5])
        n = part_i.shape[0]
        ok = (full_i[s:s + n] == part_i).all() and (full_r[s:s + n] == part_r).all()
        print(f"  loader restarted at batch {s}: {n} batches identical to the uninterrupted loader's: {bool(ok)}")
        return 0 if ok else 1
    if cmd == "reads":
        prefix, ranks, n, w, b, start, batches = sys.argv[2], *map(int, sys.argv[3:9])
        w = min(w, n)
        nw = -(-n // w)
        window_of = lambda p: p // n * nw + p % n // w
        k0, k1 = window_of(start * b), window_of((start + batches) * b - 1)
        total = sum(min(w, n - (k % nw) * w) for k in range(k0, k1 + 1))
        got = [int(load(f"{prefix}.rank{r}.safetensors")[0]["rows_read"][0]) for r in range(ranks)]
        ok = sum(got) == total and all(abs(g * ranks - total) <= ranks * (k1 - k0 + 1) for g in got)
        print(f"  windows {k0}..{k1} hold {total} rows; rows read per rank {got} (sum {sum(got)}): {bool(ok)}")
        return 0 if ok else 1
    raise SystemExit("unknown command " + cmd)

sys.exit(main())
