//! PNDM (Liu et al. 2022): pseudo numerical methods on the DDIM transfer φ, matching diffusers'
//! `PNDMScheduler`. A pseudo Runge–Kutta warm-up (PRK, 4 evaluations per step for the first three
//! steps) fills the history that the pseudo linear multistep method (PLMS, Eq. 12) then uses with
//! one evaluation per step; `skip_prk_steps` warms up with lower-order PLMS instead.

use burn::tensor::Tensor;

use super::{Evaluation, SamplerState, StepContext};
use crate::error::{DiffuseError, Result};
use crate::process::forward::PredictionType;
use crate::process::schedule::{NoiseSchedule, TimestepSpacing};

/// Options of PNDM.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PndmOptions {
    /// Warm up with PLMS of lower order instead of PRK (what Stable Diffusion used).
    pub skip_prk_steps: bool,
    /// ᾱ after the last step: 1 (`true`) or ᾱ_0 (diffusers' default for PNDM).
    pub set_alpha_to_one: bool,
}

const PNDM_ORDER: usize = 4;

/// The PRK and PLMS evaluation timesteps, noisiest first (diffusers' `set_timesteps`).
pub fn pndm_timesteps(
    options: &PndmOptions,
    num_train_timesteps: usize,
    n: usize,
    spacing: TimestepSpacing,
    steps_offset: usize,
) -> Result<(Vec<i64>, usize)> {
    let mut base = crate::process::schedule::inference_timesteps(
        num_train_timesteps,
        n,
        spacing,
        steps_offset,
    )?;
    base.reverse(); // ascending, as diffusers keeps `_timesteps`
    let base: Vec<i64> = base.into_iter().map(|t| t as i64).collect();
    if options.skip_prk_steps {
        if n < 2 {
            return Err(DiffuseError::config(
                "PNDM without PRK steps needs at least 2 inference steps",
            ));
        }
        let mut plms: Vec<i64> = base[..n - 1].to_vec();
        plms.push(base[n - 2]);
        plms.push(base[n - 1]);
        plms.reverse();
        return Ok((plms, 0));
    }
    if n < PNDM_ORDER {
        return Err(DiffuseError::config(format!(
            "PNDM's Runge–Kutta warm-up needs at least {PNDM_ORDER} inference steps (got {n}); \
             use more steps or skip_prk_steps"
        )));
    }
    let half = (num_train_timesteps / n / 2) as i64;
    let tail = &base[n - PNDM_ORDER..];
    let shifted: Vec<i64> = tail.iter().flat_map(|&t| [t, t + half]).collect();
    let repeated: Vec<i64> = shifted[..shifted.len() - 1]
        .iter()
        .flat_map(|&t| [t, t])
        .collect();
    let mut prk: Vec<i64> = repeated[1..repeated.len() - 1].to_vec();
    prk.reverse();
    let prk_len = prk.len();
    let plms = base[..n - 3].iter().rev().copied();
    Ok((prk.into_iter().chain(plms).collect(), prk_len))
}

/// The DDIM transfer φ(x_t, ε, t → t_prev) in PNDM's form (Eq. 11), ε from any parameterisation.
pub fn pndm_transfer<const D: usize>(
    schedule: &NoiseSchedule,
    final_alpha_bar: f64,
    prediction_type: PredictionType,
    sample: Tensor<D>,
    t: i64,
    prev_t: i64,
    model_output: Tensor<D>,
) -> Tensor<D> {
    let alpha_t = schedule.alpha_bar(t as usize);
    let alpha_prev = if prev_t >= 0 {
        schedule.alpha_bar(prev_t as usize)
    } else {
        final_alpha_bar
    };
    let (_, eps) = prediction_type.to_x0_and_eps(model_output, sample.clone(), alpha_t);
    let sample_coeff = (alpha_prev / alpha_t).sqrt();
    let denominator =
        alpha_t * (1.0 - alpha_prev).sqrt() + (alpha_t * (1.0 - alpha_t) * alpha_prev).sqrt();
    sample.mul_scalar(sample_coeff) - eps.mul_scalar((alpha_prev - alpha_t) / denominator)
}

/// PNDM's running state (diffusers' `counter`, `ets`, `cur_model_output`, `cur_sample`).
#[derive(Debug, Clone)]
pub struct PndmState<const D: usize> {
    options: PndmOptions,
    counter: usize,
    ets: Vec<Tensor<D>>,
    cur_model_output: Option<Tensor<D>>,
    cur_sample: Option<Tensor<D>>,
}

/// Everything a PNDM step reads besides its state.
struct PndmContext<'a> {
    schedule: &'a NoiseSchedule,
    options: PndmOptions,
    prediction_type: PredictionType,
    /// Every evaluation's timestep (integers).
    timesteps: &'a [f64],
    prk_len: usize,
    num_inference_steps: usize,
}

impl PndmContext<'_> {
    fn final_alpha_bar(&self) -> f64 {
        if self.options.set_alpha_to_one {
            1.0
        } else {
            self.schedule.alpha_bar(0)
        }
    }

    fn stride(&self) -> i64 {
        (self.schedule.num_train_timesteps() / self.num_inference_steps) as i64
    }

    fn transfer<const D: usize>(
        &self,
        sample: Tensor<D>,
        t: i64,
        prev_t: i64,
        eps: Tensor<D>,
    ) -> Tensor<D> {
        pndm_transfer(
            self.schedule,
            self.final_alpha_bar(),
            self.prediction_type,
            sample,
            t,
            prev_t,
            eps,
        )
    }
}

impl<const D: usize> SamplerState<D> for PndmState<D> {
    /// One evaluation's update (diffusers' `step`).
    fn step(&mut self, ctx: &StepContext<'_>, e: Evaluation<D>) -> Result<Tensor<D>> {
        let plan = ctx.plan;
        let ctx = PndmContext {
            schedule: ctx.schedule,
            options: self.options,
            prediction_type: ctx.prediction_type,
            timesteps: &plan.timesteps,
            prk_len: plan.prk_evaluations,
            num_inference_steps: plan.num_inference_steps,
        };
        let timestep = plan.timesteps[e.index] as i64;
        let out = if self.counter < ctx.prk_len {
            self.step_prk(&ctx, timestep, e.model_output, e.sample)
        } else {
            self.step_plms(&ctx, timestep, e.model_output, e.sample)
        };
        self.counter += 1;
        Ok(out)
    }
}

impl<const D: usize> PndmState<D> {
    pub fn new(options: PndmOptions) -> Self {
        Self {
            options,
            counter: 0,
            ets: Vec::new(),
            cur_model_output: None,
            cur_sample: None,
        }
    }

    /// PRK (Eq. 13): the four slopes of a Runge–Kutta step, weighted 1/6, 1/3, 1/3, 1/6.
    fn step_prk(
        &mut self,
        ctx: &PndmContext<'_>,
        timestep: i64,
        model_output: Tensor<D>,
        sample: Tensor<D>,
    ) -> Tensor<D> {
        let diff_to_prev = if self.counter % 2 == 1 {
            0
        } else {
            ctx.stride() / 2
        };
        let prev_t = timestep - diff_to_prev;
        let t = ctx.timesteps[self.counter / 4 * 4] as i64;
        let accumulate = |acc: Option<Tensor<D>>, term: Tensor<D>| match acc {
            Some(a) => a + term,
            None => term,
        };
        let eps = match self.counter % 4 {
            0 => {
                self.cur_model_output = Some(model_output.clone().div_scalar(6.0));
                self.ets.push(model_output.clone());
                self.cur_sample = Some(sample.clone());
                model_output
            }
            1 | 2 => {
                let acc = self.cur_model_output.take();
                self.cur_model_output = Some(accumulate(acc, model_output.clone().div_scalar(3.0)));
                model_output
            }
            _ => {
                let acc = self.cur_model_output.take();
                accumulate(acc, model_output.div_scalar(6.0))
            }
        };
        let base = self.cur_sample.clone().unwrap_or(sample);
        ctx.transfer(base, t, prev_t, eps)
    }

    /// PLMS (Eq. 12): Adams–Bashforth combinations of the last four ε.
    fn step_plms(
        &mut self,
        ctx: &PndmContext<'_>,
        timestep: i64,
        model_output: Tensor<D>,
        sample: Tensor<D>,
    ) -> Tensor<D> {
        let (mut t, mut prev_t) = (timestep, timestep - ctx.stride());
        if self.counter != 1 {
            let keep = self.ets.len().saturating_sub(3);
            self.ets.drain(..keep);
            self.ets.push(model_output.clone());
        } else {
            prev_t = timestep;
            t = timestep + ctx.stride();
        }
        let e = |back: usize| self.ets[self.ets.len() - 1 - back].clone();
        let mut base = sample;
        let eps = match (self.ets.len(), self.counter) {
            (1, 0) => {
                self.cur_sample = Some(base.clone());
                model_output
            }
            (1, 1) => {
                base = self
                    .cur_sample
                    .take()
                    .expect("PLMS's second evaluation follows its first");
                (model_output + e(0)).mul_scalar(0.5)
            }
            (2, _) => (e(0).mul_scalar(3.0) - e(1)).mul_scalar(0.5),
            (3, _) => (e(0).mul_scalar(23.0) - e(1).mul_scalar(16.0) + e(2).mul_scalar(5.0))
                .div_scalar(12.0),
            _ => (e(0).mul_scalar(55.0) - e(1).mul_scalar(59.0) + e(2).mul_scalar(37.0)
                - e(3).mul_scalar(9.0))
            .div_scalar(24.0),
        };
        ctx.transfer(base, t, prev_t, eps)
    }
}
