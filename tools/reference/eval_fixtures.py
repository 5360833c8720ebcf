#!/usr/bin/env python3
"""Golden values of the sample-quality metrics, from the reference implementations' formulas.

Writes crates/diffuse-core/tests/fixtures/eval.json: two seeded sets of random feature vectors
(correlated Gaussians of different means and covariances) and
  - `fd`: pytorch-fid's `calculate_frechet_distance` (scipy.linalg.sqrtm) on their mean and
    covariance, the FID formula of Heusel et al. 2017;
  - `kid`: the unbiased MMD² with the cubic polynomial kernel of Bińkowski et al. 2018
    (their `polynomial_mmd`, as torch-fidelity has it) on the full sets; with a subset size equal
    to the set size every random subset diffuse draws is the whole set, so the average is this;
  - `precision`, `recall`: improved precision and recall of Kynkäänniemi et al. 2019 with k = 3
    (the paper's reference algorithm: k-th nearest-neighbour radii, then coverage), real = `a`.

Run (from the repository root, with `pip install -r tools/reference/requirements.txt`):
    /opt/refenv/bin/python tools/reference/eval_fixtures.py
"""

import json
import pathlib

import numpy as np
from pytorch_fid.fid_score import calculate_frechet_distance

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/diffuse-core/tests/fixtures/eval.json"


def features(rng, n, dim, shift):
    mixing = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    return rng.normal(size=(n, dim)) @ mixing + shift


def polynomial_mmd_unbiased(x, y):
    d = x.shape[1]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    m = x.shape[0]
    sum_xx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    sum_yy = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return sum_xx + sum_yy - 2 * kxy.mean()


def kth_radii(x, k=3):
    dist = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    # column 0 of the sorted row is the point itself (distance 0)
    return np.sort(dist, axis=1)[:, k]


def coverage(support, queries, k=3):
    radii = kth_radii(support, k)
    dist = np.sqrt(((queries[:, None, :] - support[None, :, :]) ** 2).sum(-1))
    return float((dist <= radii[None, :]).any(axis=1).mean())


def main():
    rng = np.random.default_rng(20261126)
    dim, n_a, n_b = 16, 300, 300
    a = features(rng, n_a, dim, 0.0)
    b = features(rng, n_b, dim, 0.3)
    mu_a, mu_b = a.mean(0), b.mean(0)
    sigma_a, sigma_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    case = {
        "dim": dim,
        "a": a.ravel().tolist(),
        "b": b.ravel().tolist(),
        "fd": float(calculate_frechet_distance(mu_a, sigma_a, mu_b, sigma_b)),
        "kid": float(polynomial_mmd_unbiased(a, b)),
        "precision": coverage(a, b),
        "recall": coverage(b, a),
    }
    OUT.write_text(json.dumps(case))
    print(f"wrote {OUT}: fd {case['fd']:.6f} kid {case['kid']:.6f} "
          f"precision {case['precision']:.4f} recall {case['recall']:.4f}")


if __name__ == "__main__":
    main()
