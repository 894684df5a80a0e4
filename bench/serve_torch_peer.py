"""serve_torch_peer.py: the PyTorch CPU peer of bench_serve.sh: what `saev serve` does for
one upload, in Pillow + PyTorch: decode, CLIP preprocessing (shortest side to 224 bicubic,
center crop 224, OpenAI mean/std), the CLIP ViT of vit_torch_peer.py up to N_BLOCKS blocks,
the patch tokens through the SAE's top-k encoder.

Served over stdin/stdout so that it alternates with the server image by image under the
same machine load: each line "IMAGE_PATH" answers with the seconds the whole path took.
usage: serve_torch_peer.py MODEL_DIR SAE.safetensors N_BLOCKS THREADS
"""
import json, os, sys, time
import numpy as np
import torch
from PIL import Image
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vit_torch_peer import ViT, load

MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(3, 1, 1)


def main():
    model_dir, sae_path, n_blocks, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    cfg = json.load(open(f'{model_dir}/config.json'))
    model = ViT(cfg, load(f'{model_dir}/model.safetensors')).eval()
    sae = load(sae_path)
    with open(sae_path, 'rb') as f:
        n = int.from_bytes(f.read(8), 'little')
        sae_cfg = json.loads(json.loads(f.read(n))['__metadata__']['saev_sae_config'])
    k, scale = sae_cfg['k'], sae_cfg.get('data_scale', 1.0)
    print('ready', flush=True)
    with torch.inference_mode():
        for line in sys.stdin:
            path = line.strip()
            if not path:
                break
            t0 = time.perf_counter()
            im = Image.open(path).convert('RGB')
            w, h = im.size
            s = 224 / min(w, h)
            im = im.resize((max(224, int(w * s)), max(224, int(h * s))), Image.BICUBIC)
            left, top = round((im.size[0] - 224) / 2), round((im.size[1] - 224) / 2)
            im = im.crop((left, top, left + 224, top + 224))
            px = (torch.from_numpy(np.asarray(im, np.float32) / 255).permute(2, 0, 1) - MEAN) / STD
            x = model(px.unsqueeze(0), n_blocks)[0, 1:] * scale
            hpre = x @ sae['W_enc'] + sae['b_enc']
            v, i = torch.topk(hpre, k, dim=1)
            f = torch.zeros_like(hpre).scatter_(1, i, v)
            assert f.shape[0] == 196
            print(f'{time.perf_counter() - t0:.6f}', flush=True)


if __name__ == '__main__':
    main()
