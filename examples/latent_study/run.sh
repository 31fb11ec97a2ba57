#!/usr/bin/env bash
# The latent-space study: train an AE, a VAE and a cVAE with the same MLPs and a 2-D latent on
# the bundled MNIST digits, evaluate each, and write the comparison table and picture.
# Usage (with genreg's venv active): bash examples/latent_study/run.sh [OUT_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-runs/latent_study}
for model in ae vae cvae; do
  genreg run "$here/$model.json" --out "$out/$model" --overwrite --quiet
  genreg eval "$out/$model"
done
genreg compare "$out/ae" "$out/vae" "$out/cvae" -o "$out/compare.png" --markdown "$out/compare.md"
