"""bench_sae_torch.py: saev's SAE training step in PyTorch (the fixtures README's step),
the peer of bench_sae.c. Prints one line:
"<variant> <tokens/s over all timed steps> <tokens/s of the fastest step>".
usage: bench_sae_torch.py VARIANT D S B STEPS THREADS   (VARIANT: relu | topk | matryoshka)"""
import math, sys, time
import torch

variant, d, S, B, steps, threads = sys.argv[1], *map(int, sys.argv[2:7])
torch.set_num_threads(threads)
torch.manual_seed(0)
W_enc = torch.nn.Parameter(torch.nn.init.kaiming_uniform_(torch.empty(d, S)))
b_enc = torch.nn.Parameter(torch.zeros(S))
W_dec = torch.nn.Parameter(torch.nn.init.kaiming_uniform_(torch.empty(S, d)))
b_dec = torch.nn.Parameter(torch.zeros(d))
params = [W_enc, b_enc, W_dec, b_dec]
opt = torch.optim.Adam(params, lr=4e-4)
x = torch.randn(B, d)
k, l1 = 32, 4e-4
prefixes = [S]
if variant == "matryoshka":
    prefixes = sorted(set(int(S * (i + 1) / 10) for i in range(10)))

def step():
    with torch.no_grad():
        W_dec.data /= W_dec.data.norm(dim=1, keepdim=True)
    h = x @ W_enc + b_enc
    if variant == "relu":
        f = torch.relu(h)
    else:
        vals, inds = torch.topk(h, k, dim=-1, sorted=False)
        f = torch.zeros_like(h).scatter_(-1, inds, torch.ones_like(h)) * h
    if len(prefixes) == 1:
        x_hat = f @ W_dec + b_dec
        mse = ((x_hat - x) ** 2).mean()
    else:
        bounds = [0] + prefixes
        blocks = [f[:, a:b] @ W_dec[a:b] + b_dec for a, b in zip(bounds[:-1], bounds[1:])]
        preds = torch.cumsum(torch.stack(blocks), dim=0)  # saev's block decode (b_dec per block as saev)
        mse = ((preds - x) ** 2).mean()
    loss = mse + (l1 * f.abs().sum(dim=1).mean() if variant == "relu" else 0.0)
    opt.zero_grad()
    loss.backward()
    with torch.no_grad():
        par = (W_dec.grad * W_dec.data).sum(dim=1, keepdim=True)
        W_dec.grad -= par * W_dec.data
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()

step()
best = float("inf")
t = time.perf_counter()
for _ in range(steps):
    t0 = time.perf_counter()
    step()
    best = min(best, time.perf_counter() - t0)
dt = time.perf_counter() - t
print(f"{variant} {steps * B / dt:.1f} {B / best:.1f}")
