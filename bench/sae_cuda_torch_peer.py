"""sae_cuda_torch_peer.py: the PyTorch peer of bench_sae_cuda: saev's training step written
in torch on the same GPU (TF32 on, fused Adam): normalize W_dec rows, encode, relu or
top-k or batch-top-k (dense code by scatter, as saev), AuxK over dead latents, Matryoshka prefixes
decoded cumulatively, MSE (+ L1), backward, parallel-gradient removal, clip, Adam.
Same sizes and variants as bench_sae_cuda (3: batch-top-k 32). Prints: torch <variant 0..3> <tokens/s>
usage: python3 sae_cuda_torch_peer.py BATCH STEPS
"""
import sys, time
import torch

d, S, k = 768, 12288, 32


def run(variant, B, steps):
    torch.backends.cuda.matmul.allow_tf32 = True
    dev = 'cuda'
    g = torch.Generator(device=dev).manual_seed(0)
    W_enc = ((torch.rand(d, S, device=dev, generator=g) - 0.5) * 0.05).requires_grad_()
    b_enc = torch.zeros(S, device=dev, requires_grad=True)
    W_dec = ((torch.rand(S, d, device=dev, generator=g) - 0.5) * 0.05).requires_grad_()
    b_dec = torch.zeros(d, device=dev, requires_grad=True)
    params = [W_enc, b_enc, W_dec, b_dec]
    opt = torch.optim.Adam(params, lr=1e-4, fused=True)
    x = torch.rand(B, d, device=dev, generator=g) * 2 - 1
    prefixes = [S * (j + 1) // 10 for j in range(10)] if variant == 2 else [S]
    dead = torch.ones(S, dtype=torch.bool, device=dev)  # dead threshold 0: every latent dead

    def step():
        with torch.no_grad():
            W_dec /= W_dec.norm(dim=1, keepdim=True)
        h = x @ W_enc + b_enc
        if variant == 0:
            f = torch.relu(h)
        elif variant == 3:  # batch-top-k: the k·B largest of the whole batch (saev's BatchTopK)
            v, i = h.flatten().topk(k * B)
            f = torch.zeros_like(h).flatten().scatter(0, i, v).view(B, S)
        else:
            v, i = h.topk(k, dim=1)
            f = torch.zeros_like(h).scatter(1, i, v)
        loss, start = 0.0, 0
        x_hat = b_dec.expand(B, d)
        for p in prefixes:
            x_hat = x_hat + f[:, start:p] @ W_dec[start:p]
            loss = loss + ((x_hat - x) ** 2).mean() / len(prefixes)
            start = p
        if variant == 0:
            loss = loss + 4e-4 * f.abs().sum(1).mean()
        if variant == 1:
            r = (x - x_hat).detach()
            hd = h.masked_fill(~dead, float('-inf'))
            av, ai = hd.topk(512, dim=1)
            fa = torch.zeros_like(h).scatter(1, ai, av)
            loss = loss + 0.03125 * ((fa @ W_dec + b_dec - r) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            W_dec.grad -= (W_dec.grad * W_dec).sum(1, keepdim=True) * W_dec
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    for _ in range(2):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return B * steps / (time.perf_counter() - t0)


def main():
    B, steps = int(sys.argv[1]), int(sys.argv[2])
    for v in range(4):
        print(f'torch {v} {run(v, B, steps):.0f}', flush=True)
        torch.cuda.empty_cache()


if __name__ == '__main__':
    main()
