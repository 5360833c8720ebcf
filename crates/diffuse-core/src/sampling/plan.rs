//! A sampler bound to its model evaluations: the timesteps, the σ grid and the initial noise
//! scale, as diffusers' `set_timesteps` fixes them.

use super::ddim::ddim_prev_timestep;
use super::dpm_solver::{DpmSolverOptions, DpmSolverState};
use super::euler::{EulerState, HeunState};
use super::grid;
use super::kind::SamplerKind;
use super::pndm::{self, PndmState};
use super::unipc::UniPcState;
use super::{SamplerState, StepContext};
use crate::error::{DiffuseError, Result};
use crate::process::forward::PredictionType;
use crate::process::schedule::{NoiseSchedule, TimestepSpacing, inference_timesteps};

/// A sampler bound to its model evaluations.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingPlan {
    pub sampler: SamplerKind,
    /// The training timestep of every model evaluation, noisiest first (fractional for some
    /// σ spacings; Heun and PNDM evaluate some timesteps more than once).
    pub timesteps: Vec<f64>,
    /// The σ grid of the σ-space and multistep samplers (one per evaluation plus the final σ);
    /// empty for DDPM, DDIM and PNDM, which step between timesteps.
    pub sigmas: Vec<f64>,
    /// x_T = init_noise_sigma · z.
    pub init_noise_sigma: f64,
    /// N as requested (diffusers' trailing spacing can yield one timestep more).
    pub num_inference_steps: usize,
    pub num_train_timesteps: usize,
    /// PNDM: how many leading evaluations are Runge–Kutta ones.
    pub(crate) prk_evaluations: usize,
}

/// Where a sampler evaluates the model: timesteps, σ grid, x_T's scale, PNDM's PRK count.
struct Evaluations {
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
    init_noise_sigma: f64,
    prk_evaluations: usize,
}

impl Evaluations {
    fn on_timesteps(timesteps: Vec<usize>) -> Self {
        Self::on_grid(timesteps.into_iter().map(|t| t as f64).collect(), vec![])
    }

    fn on_grid(timesteps: Vec<f64>, sigmas: Vec<f64>) -> Self {
        Self {
            timesteps,
            sigmas,
            init_noise_sigma: 1.0,
            prk_evaluations: 0,
        }
    }
}

/// The requested steps: N, the spacing of its timesteps and the offset of leading spacing.
#[derive(Debug, Clone, Copy)]
struct Steps {
    n: usize,
    spacing: TimestepSpacing,
    offset: usize,
}

fn evaluations(sampler: &SamplerKind, schedule: &NoiseSchedule, s: Steps) -> Result<Evaluations> {
    let train = schedule.num_train_timesteps();
    Ok(match sampler {
        SamplerKind::Ddpm(_) | SamplerKind::Ddim(_) => {
            Evaluations::on_timesteps(inference_timesteps(train, s.n, s.spacing, s.offset)?)
        }
        SamplerKind::Pndm(options) => {
            let (t, prk) = pndm::pndm_timesteps(options, train, s.n, s.spacing, s.offset)?;
            Evaluations {
                prk_evaluations: prk,
                ..Evaluations::on_grid(t.into_iter().map(|t| t as f64).collect(), vec![])
            }
        }
        SamplerKind::DpmSolver(DpmSolverOptions {
            sigmas,
            lambda_min_clipped,
            round_karras_timesteps,
            ..
        }) => {
            let last = grid::clipped_last_timestep(schedule, *lambda_min_clipped);
            let t = grid::solver_timesteps(train, last, s.n, s.spacing, s.offset)?;
            let g = grid::solver_grid(schedule, t, sigmas, *round_karras_timesteps);
            Evaluations::on_grid(g.timesteps, g.sigmas)
        }
        SamplerKind::UniPc(options) => {
            let t = grid::solver_timesteps(train, train, s.n, s.spacing, s.offset)?;
            let g = grid::solver_grid(schedule, t, &options.sigmas, true);
            Evaluations::on_grid(g.timesteps, g.sigmas)
        }
        SamplerKind::Euler(options)
        | SamplerKind::EulerAncestral(options)
        | SamplerKind::Heun(options) => {
            let t = grid::sigma_sampler_timesteps(train, s.n, s.spacing, s.offset)?;
            let mut g = grid::sigma_sampler_grid(schedule, t, &options.sigmas);
            if matches!(sampler, SamplerKind::Heun(_)) {
                g = grid::heun_grid(g);
            }
            Evaluations {
                init_noise_sigma: grid::sigma_init_noise(&g.sigmas, s.spacing),
                ..Evaluations::on_grid(g.timesteps, g.sigmas)
            }
        }
    })
}

impl SamplingPlan {
    /// Picks the model evaluations for N steps of `sampler` over `schedule` with `spacing`.
    pub fn new(
        sampler: SamplerKind,
        schedule: &NoiseSchedule,
        num_inference_steps: usize,
        spacing: TimestepSpacing,
        steps_offset: usize,
    ) -> Result<Self> {
        let steps = Steps {
            n: num_inference_steps,
            spacing,
            offset: steps_offset,
        };
        let e = evaluations(&sampler, schedule, steps)?;
        Ok(Self {
            sampler,
            timesteps: e.timesteps,
            sigmas: e.sigmas,
            init_noise_sigma: e.init_noise_sigma,
            num_inference_steps,
            num_train_timesteps: schedule.num_train_timesteps(),
            prk_evaluations: e.prk_evaluations,
        })
    }

    /// How many times the model is evaluated (NFE) per sample.
    pub fn evaluations(&self) -> usize {
        self.timesteps.len()
    }

    /// The DDPM/DDIM timestep that follows evaluation `index`, `None` past the first timestep.
    pub fn prev_timestep(&self, index: usize) -> Option<usize> {
        let t = self.timesteps[index] as usize;
        match self.sampler {
            // diffusers' DDPM walks its own timestep list.
            SamplerKind::Ddpm(_) => self.timesteps.get(index + 1).map(|&t| t as usize),
            _ => ddim_prev_timestep(t, self.num_train_timesteps, self.num_inference_steps),
        }
    }

    /// The factor the model input is scaled by at evaluation `index`: 1/√(σ² + 1) for the
    /// σ-space samplers (so the network sees x_t), 1 otherwise.
    pub fn input_scale(&self, index: usize) -> f64 {
        if self.sampler.in_sigma_space() {
            1.0 / (self.sigmas[index].powi(2) + 1.0).sqrt()
        } else {
            1.0
        }
    }

    /// Whether evaluation `index` draws step noise.
    pub fn needs_noise(&self, index: usize) -> bool {
        match &self.sampler {
            SamplerKind::Ddpm(_) => self.timesteps[index] > 0.0,
            SamplerKind::Ddim(o) => o.eta > 0.0,
            SamplerKind::DpmSolver(o) => o.stochastic,
            SamplerKind::EulerAncestral(_) => true,
            _ => false,
        }
    }

    /// The state of a fresh run of this plan's sampler.
    pub fn start<const D: usize>(&self) -> Box<dyn SamplerState<D>> {
        match &self.sampler {
            SamplerKind::Ddpm(o) => Box::new(*o),
            SamplerKind::Ddim(o) => Box::new(*o),
            SamplerKind::DpmSolver(o) => Box::new(DpmSolverState::new(*o)),
            SamplerKind::UniPc(o) => Box::new(UniPcState::new(o.clone())),
            SamplerKind::Euler(o) => Box::new(EulerState::new(*o, false)),
            SamplerKind::EulerAncestral(o) => Box::new(EulerState::new(*o, true)),
            SamplerKind::Heun(o) => Box::new(HeunState::new(*o)),
            SamplerKind::Pndm(o) => Box::new(PndmState::new(*o)),
        }
    }

    /// What a step of this plan reads, for a model that predicts `prediction_type`.
    pub fn context<'a>(
        &'a self,
        schedule: &'a NoiseSchedule,
        prediction_type: PredictionType,
    ) -> Result<StepContext<'a>> {
        if self.num_train_timesteps != schedule.num_train_timesteps() {
            return Err(DiffuseError::config(format!(
                "the sampling plan was made for {} training timesteps, the schedule has {}",
                self.num_train_timesteps,
                schedule.num_train_timesteps()
            )));
        }
        Ok(StepContext {
            plan: self,
            schedule,
            prediction_type,
        })
    }
}
