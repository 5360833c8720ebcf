#!/usr/bin/env python3
"""Reference runs of scipy's adaptive RK45 (scipy.integrate.solve_ivp, method="RK45"), the
solver Song et al. (2021) use for probability-flow likelihoods.

Writes crates/diffuse-core/tests/fixtures/rk45.json: for each problem (named; the Rust test
defines the same right-hand sides) and tolerance pair, the end state, the number of function
evaluations (nfev) and of accepted steps. Problems: the harmonic oscillator y'' = -y, the
Van der Pol oscillator with mu = 1, and exponential decay integrated backwards in time.

Run (from the repository root, with `pip install -r tools/reference/requirements.txt`):
    /opt/refenv/bin/python tools/reference/rk45_fixtures.py
"""

import json
import pathlib

import numpy as np
import scipy
from scipy.integrate import solve_ivp

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/diffuse-core/tests/fixtures/rk45.json"

PROBLEMS = {
    "oscillator": (lambda t, y: np.array([y[1], -y[0]]), (0.0, 10.0), [1.0, 0.0]),
    "van_der_pol": (
        lambda t, y: np.array([y[1], (1.0 - y[0] ** 2) * y[1] - y[0]]),
        (0.0, 8.0),
        [2.0, 0.0],
    ),
    "backward_decay": (lambda t, y: -2.0 * y, (1.0, 0.0), [1.0, -0.5]),
}
TOLERANCES = [(1e-3, 1e-6), (1e-5, 1e-5), (1e-8, 1e-10)]


def main():
    cases = []
    for name, (fun, t_span, y0) in PROBLEMS.items():
        for rtol, atol in TOLERANCES:
            sol = solve_ivp(fun, t_span, np.array(y0), method="RK45", rtol=rtol, atol=atol)
            assert sol.success, (name, sol.message)
            cases.append({
                "problem": name,
                "t0": t_span[0],
                "t1": t_span[1],
                "y0": y0,
                "rtol": rtol,
                "atol": atol,
                "y1": sol.y[:, -1].tolist(),
                "nfev": int(sol.nfev),
                "accepted_steps": len(sol.t) - 1,
            })
    OUT.write_text(json.dumps({"scipy": scipy.__version__, "cases": cases}, indent=1) + "\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
