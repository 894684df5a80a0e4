"""vit_torch_peer.py: the PyTorch CPU peer of bench_vit: a CLIP ViT built from torch
modules (Conv2d, Linear, LayerNorm, matmul + softmax attention, quick_gelu as
transformers writes it), loaded from the same model.safetensors and run on the same
pixels with the same thread count. Prints one line:
    torch <images/s all blocks> <images/s to layer -2> <rel err of layer -2 vs saev>
usage: vit_torch_peer.py MODEL_DIR PIXELS.safetensors SAEV_OUT.safetensors THREADS BATCHES
"""
import json, struct, sys, time
import numpy as np
import torch
import torch.nn as nn


def load(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    return {k: torch.from_numpy(np.frombuffer(data[v['data_offsets'][0]:v['data_offsets'][1]], dtype='<f4').reshape(v['shape']).copy())
            for k, v in hdr.items() if k != '__metadata__'}


class Block(nn.Module):
    def __init__(self, D, H, F, eps):
        super().__init__()
        self.H = H
        self.ln1, self.ln2 = nn.LayerNorm(D, eps=eps), nn.LayerNorm(D, eps=eps)
        self.q, self.k, self.v, self.o = (nn.Linear(D, D) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(D, F), nn.Linear(F, D)

    def forward(self, x):
        B, T, D = x.shape
        hd = D // self.H
        h = self.ln1(x)
        q, k, v = (m(h).view(B, T, self.H, hd).transpose(1, 2) for m in (self.q, self.k, self.v))
        a = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * hd ** -0.5, dim=-1)
        a = torch.matmul(a, v).transpose(1, 2).reshape(B, T, D)
        x = x + self.o(a)
        h = self.fc1(self.ln2(x))
        return x + self.fc2(h * torch.sigmoid(1.702 * h))


class ViT(nn.Module):
    def __init__(self, cfg, w):
        super().__init__()
        D, L, P = cfg['hidden_size'], cfg['num_hidden_layers'], cfg['patch_size']
        eps = cfg['layer_norm_eps']
        self.patch = nn.Conv2d(3, D, P, stride=P, bias=False)
        self.pre = nn.LayerNorm(D, eps=eps)
        self.blocks = nn.ModuleList(Block(D, cfg['num_attention_heads'], cfg['intermediate_size'], eps) for _ in range(L))
        with torch.no_grad():
            self.patch.weight.copy_(w['embeddings.patch_embedding.weight'])
            self.cls = w['embeddings.class_embedding']
            self.pos = w['embeddings.position_embedding.weight']
            self.pre.weight.copy_(w['pre_layrnorm.weight']); self.pre.bias.copy_(w['pre_layrnorm.bias'])
            names = {'ln1': 'layer_norm1', 'ln2': 'layer_norm2', 'q': 'self_attn.q_proj', 'k': 'self_attn.k_proj',
                     'v': 'self_attn.v_proj', 'o': 'self_attn.out_proj', 'fc1': 'mlp.fc1', 'fc2': 'mlp.fc2'}
            for i, b in enumerate(self.blocks):
                for mine, theirs in names.items():
                    getattr(b, mine).weight.copy_(w[f'encoder.layers.{i}.{theirs}.weight'])
                    getattr(b, mine).bias.copy_(w[f'encoder.layers.{i}.{theirs}.bias'])

    def forward(self, px, n_blocks):
        x = self.patch(px).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], 1, -1), x], dim=1) + self.pos
        x = self.pre(x)
        for b in self.blocks[:n_blocks]:
            x = b(x)
        return x


def main():
    model_dir, pixels_path, saev_out, threads, batches = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    torch.set_num_threads(threads)
    cfg = json.load(open(f'{model_dir}/config.json'))
    model = ViT(cfg, load(f'{model_dir}/model.safetensors')).eval()
    px = load(pixels_path)['pixel_values']
    L = cfg['num_hidden_layers']
    rates = []
    with torch.inference_mode():
        for n_blocks in (L, L - 1):
            model(px, n_blocks)  # warm-up
            t0 = time.perf_counter()
            for _ in range(batches):
                y = model(px, n_blocks)
            rates.append(batches * px.shape[0] / (time.perf_counter() - t0))
    ref = load(saev_out)['layer_m2'].double()
    err = (ref - y.double()).norm() / y.double().norm()
    print(f'torch {rates[0]:.3f} {rates[1]:.3f} {err.item():.3e}', flush=True)


if __name__ == '__main__':
    main()
