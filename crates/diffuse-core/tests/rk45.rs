//! The adaptive RK45 against scipy's `solve_ivp(method="RK45")` (tools/reference/
//! rk45_fixtures.py): the same steps, so the same number of evaluations and the same end state.

mod common;

use common::floats;
use diffuse_core::Result;
use diffuse_core::eval::ode::{Tolerances, solve_rk45};
use serde_json::Value;

/// The fixture's right-hand sides.
fn problem(name: &str) -> fn(f64, &[f64]) -> Result<Vec<f64>> {
    match name {
        "oscillator" => |_, y| Ok(vec![y[1], -y[0]]),
        "van_der_pol" => |_, y| Ok(vec![y[1], (1.0 - y[0] * y[0]) * y[1] - y[0]]),
        "backward_decay" => |_, y| Ok(y.iter().map(|v| -2.0 * v).collect()),
        other => panic!("unknown fixture problem {other}"),
    }
}

/// Every step is accepted or rejected as scipy decides (equal nfev, equal accepted steps); the
/// end states agree to rounding: sums in another order shift the last bits of each step, which
/// Van der Pol's dynamics amplify to a few 1e-12 relative.
#[test]
fn steps_and_end_states_match_scipy() {
    let fixture: Value = serde_json::from_str(include_str!("fixtures/rk45.json")).unwrap();
    for case in fixture["cases"].as_array().unwrap() {
        let name = case["problem"].as_str().unwrap();
        let tol = Tolerances::new(
            case["rtol"].as_f64().unwrap(),
            case["atol"].as_f64().unwrap(),
        )
        .unwrap();
        let solution = solve_rk45(
            &mut problem(name),
            case["t0"].as_f64().unwrap(),
            floats(&case["y0"]),
            case["t1"].as_f64().unwrap(),
            &tol,
        )
        .unwrap();
        let what = format!("{name} at rtol {}, atol {}", tol.rtol, tol.atol);
        assert_eq!(
            solution.nfe as u64,
            case["nfev"].as_u64().unwrap(),
            "{what}"
        );
        assert_eq!(
            (solution.steps - solution.rejected) as u64,
            case["accepted_steps"].as_u64().unwrap(),
            "{what}"
        );
        for (ours, theirs) in solution.y.iter().zip(floats(&case["y1"])) {
            assert!(
                (ours - theirs).abs() <= 1e-10 * theirs.abs().max(1.0),
                "{what}: {ours} vs scipy {theirs}"
            );
        }
    }
}
