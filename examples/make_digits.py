"""Makes the dataset coevo ships, and the moments its tests compare with (run once, by hand).

    python3 -m venv /tmp/dvenv && /tmp/dvenv/bin/pip install scikit-learn numpy
    /tmp/dvenv/bin/python examples/make_digits.py

Source: the handwritten digits scikit-learn ships (`sklearn.datasets.load_digits`: 1,797 8x8
images of the digits 0-9, a copy of the test set of the UCI ML "Optical Recognition of
Handwritten Digits" data, CC BY 4.0; scikit-learn is BSD-3-Clause). Each image (64 grey levels,
0-16) is reduced by PCA to d = 16 coordinates (full SVD, so the result is deterministic); the
digit is its label, 0-9 (`label_names` holds "zero".."nine").

Writes
- scenarios/data/digits_pca16.npz: `vectors` (1797 x 16, float64), `labels` (1797, int64),
  `label_names` (10 strings; coevo ignores it);
- tests/fixtures/data/digits_moments.json: numpy's per-label counts, means and covariances
  (divisor n and n - 1) and the marginal ones, which tests/data.rs compares coevo's with
  (so the tests need no Python).
"""

import json
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def main():
    digits = load_digits()
    x = digits.data.astype(np.float64)
    y = digits.target.astype(np.int64)
    z = PCA(n_components=16, svd_solver="full").fit_transform(x).astype(np.float64)
    out = ROOT / "scenarios" / "data" / "digits_pca16.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, vectors=z, labels=y, label_names=np.array(NAMES))

    # Read back what was written, so the moments are those of the file's exact values.
    with np.load(out) as f:
        v, labels = f["vectors"], f["labels"]
    moments = {"rows": int(v.shape[0]), "dim": int(v.shape[1]), "labels": []}
    for i in range(int(labels.max()) + 1):
        rows = v[labels == i]
        moments["labels"].append(
            {
                "count": int(rows.shape[0]),
                "mean": rows.mean(axis=0).tolist(),
                "cov_mle": np.cov(rows.T, bias=True).tolist(),
                "cov_unbiased": np.cov(rows.T, bias=False).tolist(),
            }
        )
    moments["marginal"] = {"mean": v.mean(axis=0).tolist(), "cov_mle": np.cov(v.T, bias=True).tolist()}
    fixture = ROOT / "tests" / "fixtures" / "data" / "digits_moments.json"
    fixture.parent.mkdir(parents=True, exist_ok=True)
    fixture.write_text(json.dumps(moments, indent=1) + "\n")
    print(f"{out}: {v.shape[0]} rows x {v.shape[1]}; {fixture}")


if __name__ == "__main__":
    main()
