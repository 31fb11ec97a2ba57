"""Can the reference classifier read what a decoder draws? Before and after training it on blurred, shifted images.

    python benchmarks/classifier_blur.py [--epochs 30] [--out benchmarks/RESULTS.md]

Issue 16, case 3: on a dataset of squares, rings and crosses, a cVAE's samples looked right but
scored 0.39 conditional accuracy, while the classifier read 97.8% of the real test images: it had
only ever seen sharp images, and a decoder's are blurry. For two datasets (the shapes, drawn here,
and the bundled ``mnist-sample``) this trains one cVAE (the latent study's, examples/latent_study/cvae.json)
and two reference classifiers, one on the training images as they are (``augment=False``, the old
recipe) and one on randomly blurred and shifted copies (``augment=True``, genreg's recipe), and
reports each classifier's accuracy on the real test images, on the cVAE's reconstructions of them,
and the cVAE's conditional accuracy (100 samples per class).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import torch

import genreg
from genreg.evaluation import classifier as clf

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_vae import machine  # noqa: E402

STUDY_CVAE = HERE.parent / "examples" / "latent_study" / "cvae.json"


def shapes(n: int, size: int = 28, seed: int = 0) -> genreg.Split:
    """``n`` anti-aliased outlines of squares (label 0), rings (1) and crosses (2) on ``size`` x ``size`` pixels.

    Each shape has a random centre, size (35-75% of the image) and stroke (5-11% of the image); pixel
    values in [0, 1] are the stroke's coverage, from a distance field.
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    centre = size * (0.5 + 0.12 * (2 * torch.rand(n, 2, 1, 1, generator=g) - 1))
    extent = size * (0.35 + 0.4 * torch.rand(n, 1, 1, generator=g)) / 2  # half side, radius, half bar length
    stroke = size * (0.05 + 0.06 * torch.rand(n, 1, 1, generator=g)) / 2  # half the stroke width
    grid = torch.arange(size, dtype=torch.float32) + 0.5
    x, y = grid.view(1, 1, -1) - centre[:, 0], grid.view(1, -1, 1) - centre[:, 1]
    square = (torch.maximum(x.abs(), y.abs()) - extent).abs() - stroke
    ring = (torch.sqrt(x**2 + y**2) - extent).abs() - stroke
    bar = torch.maximum(x.abs() - extent, y.abs() - stroke)
    cross = torch.minimum(bar, torch.maximum(y.abs() - extent, x.abs() - stroke))
    distance = torch.stack([square, ring, cross])[labels, torch.arange(n)]
    return genreg.Split((0.5 - distance).clamp(0, 1).unsqueeze(1), labels)


def shapes_data(n_train: int = 600, n_test: int = 300) -> genreg.DataSplits:
    return genreg.DataSplits(shapes(n_train, seed=0), shapes(n_test, seed=1), 3)


def trained_cvae(data: genreg.DataSplits, epochs: int) -> genreg.GenerativeModel:
    spec = genreg.load_spec(json.loads(STUDY_CVAE.read_text()), [f"train.epochs={epochs}", "train.device=cpu"])
    torch.manual_seed(spec.seed)
    model = genreg.build_model(spec.model, data.info)
    genreg.train(model, data, spec.train, seed=spec.seed, progress=False)
    return model.eval()


def measure(name: str, data: genreg.DataSplits, epochs: int) -> list[str]:
    """One table row per classifier recipe: test, reconstruction and conditional accuracy."""
    start = time.perf_counter()
    model = trained_cvae(data, epochs)
    rows = []
    for augment in (False, True):
        classifier = clf.train_classifier(data, augment=augment)
        test = clf.accuracy(classifier, data.test)
        reconstructions = clf.reconstruction_accuracy(model, classifier, data.test)
        conditional = clf.conditional_accuracy(model, classifier, n_per_class=100)["overall"]
        recipe = "blur + shift (genreg)" if augment else "sharp images only (before)"
        rows.append(f"| {name} | {recipe} | {test:.3f} | {reconstructions:.3f} | {conditional:.3f} |")
        print(rows[-1], file=sys.stderr, flush=True)
    print(f"{name}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="cVAE training epochs")
    parser.add_argument("--out", type=Path, help="append the results to this Markdown file")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = [
        *measure("squares, rings, crosses (600 / 300)", shapes_data(), args.epochs),
        *measure("mnist-sample (4,000 / 1,000)", genreg.load_data({"type": "mnist-sample"}), args.epochs),
    ]
    lines = [
        f"## Reference classifier on decoder output ({datetime.date.today()})",
        "",
        "Machine: " + ", ".join(f"{key} {value}" for key, value in machine("cpu").items() if value),
        "",
        f"`python benchmarks/classifier_blur.py --epochs {args.epochs}`: one cVAE "
        f"(examples/latent_study/cvae.json, {args.epochs} epochs) per dataset, two classifiers (8 epochs each).",
        "",
        "| dataset | classifier trained on | test images | reconstructions | conditional accuracy |",
        "| --- | --- | --- | --- | --- |",
        *rows,
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with args.out.open("a") as fh:
            fh.write("\n" + text)


if __name__ == "__main__":
    main()
