"""vit_cuda_torch_peer.py: the PyTorch peer of bench_vit_cuda on the same GPU: transformers
CLIPVisionModel (sdpa attention, output_hidden_states=True) at ViT-B/16 and ViT-L/14
sizes with random weights, fp32 / tf32 / bf16, batch B at 224 px; images/s as the
median of ITERS synchronized forwards after one warm-up, for all blocks and for the
forward truncated to stop at layer -2 (num_hidden_layers - 1 blocks run).
Prints: torch <model> <mode> <img/s all> <img/s to layer -2>
usage: python3 vit_cuda_torch_peer.py B ITERS MODELS(b16,l14)
"""
import statistics, sys, time
import torch
from transformers import CLIPVisionConfig, CLIPVisionModel

SIZES = {'b16': dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, patch_size=16),
         'l14': dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, patch_size=14)}


def rate(model, px, iters):
    with torch.inference_mode():
        model(pixel_values=px, output_hidden_states=True)
        torch.cuda.synchronize()
        ts = []
        for _ in range(iters):
            t0 = time.perf_counter()
            model(pixel_values=px, output_hidden_states=True)
            torch.cuda.synchronize()
            ts.append(time.perf_counter() - t0)
    return px.shape[0] / statistics.median(ts)


def main():
    B, iters, models = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    for key in ('b16', 'l14'):
        if key not in models:
            continue
        for mode in ('fp32', 'tf32', 'bf16'):
            torch.backends.cuda.matmul.allow_tf32 = mode == 'tf32'
            torch.backends.cudnn.allow_tf32 = mode == 'tf32'
            dtype = torch.bfloat16 if mode == 'bf16' else torch.float32
            out = []
            for layers in (SIZES[key]['num_hidden_layers'], SIZES[key]['num_hidden_layers'] - 1):
                # the attention backend is a config field (the model's constructor takes only the config)
                cfg = CLIPVisionConfig(**{**SIZES[key], 'num_hidden_layers': layers}, image_size=224, hidden_act='quick_gelu',
                                       attn_implementation='sdpa')
                model = CLIPVisionModel(cfg).to('cuda', dtype).eval()
                impl = getattr(model.config, '_attn_implementation', None)
                if impl != 'sdpa':
                    sys.exit(f'vit_cuda_torch_peer.py: transformers chose attention "{impl}", not sdpa')
                px = torch.randn(B, 3, 224, 224, device='cuda', dtype=dtype)
                out.append(rate(model, px, iters))
                del model
                torch.cuda.empty_cache()
            print(f'torch {key} {mode} {out[0]:.0f} {out[1]:.0f}', flush=True)


if __name__ == '__main__':
    main()
