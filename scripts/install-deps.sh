#!/usr/bin/env bash
# Installs every Debian package saev-c needs to build, test and run its demo.
# Idempotent: when every package is already installed it returns in well under a second
# without touching apt. SAEV_SKIP_DEPS=1 skips it entirely (for machines without root).
set -euo pipefail
[ "${SAEV_SKIP_DEPS:-0}" = 1 ] && exit 0

PACKAGES=(
  # build
  build-essential cmake pkg-config
  # scripts/gpu-check.sh --collect-libs: the carried programs find their libraries through rpath
  patchelf
  # MPI, parallel HDF5 and its command-line tools
  openmpi-bin libopenmpi-dev libhdf5-openmpi-dev hdf5-tools
  # libraries the C code links
  libyaml-dev check libopenblas-dev libturbojpeg0-dev libjpeg62-turbo-dev libpng-dev
  libcjson-dev libmicrohttpd-dev libzstd-dev
  # reference tools used by tests and benchmarks (Debian's python, /usr/bin/python3)
  python3-numpy python3-h5py python3-pil
  # Slurm cluster for the submit tests
  slurm-wlm munge
  # the demo data set: real photos and Fashion-MNIST, all from Debian's archive
  dataset-fashion-mnist python3-skimage python3-sklearn mate-backgrounds
  # hardening: libFuzzer harnesses and the sanitizer build (make fuzz, make test-asan)
  clang-14 libclang-rt-14-dev llvm-14
)
# The benchmark peer (PyTorch CPU) is large; install it only when asked.
if [ "${SAEV_BENCH_DEPS:-0}" = 1 ]; then PACKAGES+=(python3-torch); fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
