/*
 * bench_image.c: decode + preprocess throughput on one core, next to Pillow doing the
 * same pipeline (/usr/bin/python3: Image.open().convert("RGB"), resize, center crop,
 * numpy normalise to float32 [3,H,W]) in the same run on the same files.
 *
 * usage: bench_image [--pipeline clip|dinov2|siglip] [--seconds S] [FILES...]
 * Without files: the real photos Debian ships (mate-backgrounds, python3-skimage's colour
 * photos, python3-sklearn's china/flower), the ones saev demo-data draws from.
 */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "image/decode.h"
#include "image/preprocess.h"
#include "log.h"

static const char *default_globs[] = {"/usr/share/backgrounds/mate/nature/*.jpg", "/usr/lib/python3/dist-packages/sklearn/datasets/images/*.jpg",
                                      "/usr/lib/python3/dist-packages/skimage/data/astronaut.png", "/usr/lib/python3/dist-packages/skimage/data/chelsea.png",
                                      "/usr/lib/python3/dist-packages/skimage/data/coffee.png", "/usr/lib/python3/dist-packages/skimage/data/rocket.jpg"};

int main(int argc, char **argv) {
    const char *pipeline = "clip";
    double seconds = 3.0;
    char **files = mallocCheck(sizeof(char *) * (argc + 64));
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--pipeline") && i + 1 < argc) pipeline = argv[++i];
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
        else files[n++] = argv[i];
    }
    if (!n) {
        for (size_t g = 0; g < sizeof default_globs / sizeof default_globs[0]; g++) {
            glob_t gl;
            if (glob(default_globs[g], 0, NULL, &gl) == 0)
                for (size_t k = 0; k < gl.gl_pathc && n < argc + 63; k++) files[n++] = strdupCheck(gl.gl_pathv[k]);
        }
    }
    if (!n) saev_fail("no images (install mate-backgrounds python3-skimage python3-sklearn or pass files)");
    PreprocessSpec spec;
    char err[1024];
    if (preprocess_family(pipeline, &spec, err, sizeof err)) saev_usage_fail("%s", err);
    float *out = mallocCheck(sizeof(float) * 3 * 1024 * 1024);
    int64_t pixels = 0;
    for (int i = 0; i < n; i++) {
        Image8 im;
        if (decode_rgb_file(files[i], 0, &im, err, sizeof err)) saev_fail("%s", err);
        pixels += (int64_t)im.w * im.h;
        image8_free(&im);
    }
    printf("bench_image: %d files (mean %.2f Mpixel), pipeline %s, 1 core\n", n, pixels / 1e6 / n, pipeline);
    /* ours */
    int64_t done = 0;
    double t0 = saev_now(), t;
    do {
        for (int i = 0; i < n; i++, done++) {
            Image8 im;
            if (decode_rgb_file(files[i], 0, &im, err, sizeof err)) saev_fail("%s", err);
            preprocess_image(&spec, &im, out, NULL);
            image8_free(&im);
        }
        t = saev_now() - t0;
    } while (t < seconds);
    double ours = done / t;
    /* Pillow, same files, same pipeline, same time budget */
    char *cmd = mallocCheck(65536);
    int len = snprintf(cmd, 65536,
        "/usr/bin/python3 -c '\n"
        "import sys, time, json, numpy as np\n"
        "from PIL import Image\n"
        "P = json.load(open(\"%s\"))[\"pipelines\"][sys.argv[1]]\n"
        "mean = np.array(P[\"mean\"], np.float32)[:, None, None]; std = np.array(P[\"std\"], np.float32)[:, None, None]\n"
        "interp = {\"bicubic\": Image.BICUBIC, \"bilinear\": Image.BILINEAR}[P[\"interp\"]]\n"
        "def run(f):\n"
        "    im = Image.open(f).convert(\"RGB\")\n"
        "    w, h = im.size\n"
        "    if P[\"resize\"] == \"shortest\":\n"
        "        s = P[\"size\"]; size = (s, int(s * h / w)) if w <= h else (int(s * w / h), s)\n"
        "    else: size = (P[\"size\"], P[\"size\"])\n"
        "    im = im.resize(size, interp)\n"
        "    c = P[\"crop\"]\n"
        "    if c:\n"
        "        l = int(round((size[0] - c) / 2)); t = int(round((size[1] - c) / 2)); im = im.crop((l, t, l + c, t + c))\n"
        "    x = np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / np.float32(255)\n"
        "    return (x - mean) / std\n"
        "files = sys.argv[3:]; done = 0; t0 = time.perf_counter()\n"
        "while True:\n"
        "    for f in files: run(f); done += 1\n"
        "    t = time.perf_counter() - t0\n"
        "    if t >= float(sys.argv[2]): break\n"
        "print(done / t)\n' %s %g",
        "tests/fixtures/preprocess/pipelines.json", pipeline, seconds);
    for (int i = 0; i < n; i++) len += snprintf(cmd + len, 65536 - len, " '%s'", files[i]);
    FILE *p = popen(cmd, "r");
    libcCheckPtr(p, "/usr/bin/python3");
    double pil = 0;
    if (fscanf(p, "%lf", &pil) != 1) saev_fail("the Pillow peer printed nothing (run from the project root; needs python3-pil, python3-numpy)");
    pclose(p);
    printf("  saev-c : %8.1f images/s per core\n", ours);
    printf("  Pillow : %8.1f images/s per core (Pillow + numpy, same files and pipeline)\n", pil);
    printf("  ratio  : %8.2fx\n", ours / pil);
    return 0;
}
