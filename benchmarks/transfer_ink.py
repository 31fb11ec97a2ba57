"""How well counterfactual decoding works on a run of ``examples/cvae_ink.json`` (the README's numbers).

    python benchmarks/transfer_ink.py [RUN]          # RUN defaults to runs/cvae-ink

200 test digits (chosen with seed 0) are encoded with their own condition and decoded (1) under each of the
10 classes: the share read as the target class by ``genreg eval``'s reference classifier; (2) at ink 0.05,
0.10, 0.15, 0.20, 0.25: their mean intensity at each, and the share still read as their own class.
"""

from __future__ import annotations

import sys

import torch

import genreg
from genreg.evaluation.classifier import classify, reference_classifier
from genreg.files.model_files import read_spec

INKS = [0.05, 0.10, 0.15, 0.20, 0.25]


def main(run: str) -> None:
    model, spec = genreg.load_model(run), read_spec(run)
    data = genreg.load_data(spec["data"])
    classifier, accuracy = reference_classifier(spec["data"], data)
    index = torch.randperm(len(data.test), generator=torch.Generator().manual_seed(0))[:200]
    x, condition = data.test.images[index], data.test.condition(index)
    with torch.no_grad(), model.evaluating():
        to_class = model.transfer(x, condition, torch.arange(10))  # (200, 10, C, H, W)
        read = torch.stack([classify(classifier, to_class[:, t]) for t in range(10)], 1)
        to_ink = model.transfer(x, condition, {"ink": torch.tensor(INKS)})  # (200, 5, C, H, W)
        kept = torch.stack([classify(classifier, to_ink[:, t]) == condition["label"] for t in range(len(INKS))])
    print(f"reference classifier: {accuracy:.3f} on the test digits")
    print(f"decoded under each class: {(read == torch.arange(10)).float().mean():.1%} read as the target class")
    means = ", ".join(f"{to_ink[:, t].mean():.3f}" for t in range(len(INKS)))
    inks = ", ".join(map(str, INKS))
    print(f"decoded at ink {inks}: mean intensity {means}; {kept.float().mean():.1%} keep their class")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/cvae-ink")
