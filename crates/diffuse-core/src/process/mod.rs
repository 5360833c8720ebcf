//! The forward process and what is fixed with it: the β schedule and its σ view, q(x_t | x_0) and
//! the posterior, the reverse-step variance, the continuous-time SDEs, and the terms of the
//! variational bound.

pub mod bound;
pub mod forward;
pub mod schedule;
pub mod sde;
pub mod sigmas;
pub mod variance;
