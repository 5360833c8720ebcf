//! diffusers scheduler configs (`scheduler/scheduler_config.json`) and the sampler each one is.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{DIFFUSERS_VERSION, parse_config_json, reject_unknown_fields};
use crate::error::{DiffuseError, Result};
use crate::process::forward::PredictionType;
use crate::process::schedule::{
    BetaSchedule, NoiseSchedule, TimestepSpacing, rescale_zero_terminal_snr,
};
use crate::process::variance::DdpmVariance;
use crate::sampling::{
    FinalSigma, SamplerKind, SamplerName, SamplerSettings, SecondOrderRule, SigmaSpacing,
    UniPcVariant, X0Limit,
};

/// The fields of diffusers' scheduler configs (the classes of [`SamplerName::scheduler_class`]) that
/// `diffuse` honours. Class-specific fields are optional; options `diffuse` does not implement
/// are accepted only at their neutral value, anything else is rejected by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedulerConfig {
    #[serde(rename = "_class_name")]
    pub class_name: String,
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: String,
    #[serde(default)]
    pub trained_betas: Option<Vec<f64>>,
    pub prediction_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_sample: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_sample_range: Option<f64>,
    #[serde(default)]
    pub thresholding: bool,
    #[serde(default = "default_ratio")]
    pub dynamic_thresholding_ratio: f64,
    #[serde(default = "one")]
    pub sample_max_value: f64,
    /// diffusers' default differs by class (leading for DDPM/DDIM/PNDM, linspace otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestep_spacing: Option<String>,
    #[serde(default)]
    pub steps_offset: usize,
    #[serde(default)]
    pub rescale_betas_zero_snr: bool,
    /// DDPMScheduler (and DPM-Solver, where only null is accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variance_type: Option<String>,
    /// DDIMScheduler, PNDMScheduler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_alpha_to_one: Option<bool>,
    #[serde(flatten)]
    pub solver: SolverFields,
    /// `_diffusers_version` and other metadata; any other key is rejected.
    #[serde(flatten)]
    pub metadata: BTreeMap<String, Value>,
}

/// The fields of the multistep, σ-space and PNDM schedulers.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SolverFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solver_order: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solver_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lower_order_final: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub euler_at_final: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_karras_sigmas: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_sigmas_type: Option<String>,
    /// A number, or "-Infinity" (diffusers writes the bare token, which we quote before parsing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_min_clipped: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predict_x0: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_corrector: Option<Vec<usize>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma_min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma_max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_prk_steps: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpolation_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestep_type: Option<String>,
    /// Options accepted only when off / unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_exponential_sigmas: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_beta_sigmas: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_lu_lambdas: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_flow_sigmas: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_dynamic_shifting: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_shift: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_shift_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solver_p: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift_terminal: Option<Value>,
}

fn one() -> f64 {
    1.0
}

fn default_ratio() -> f64 {
    0.995
}

/// Quotes the bare `Infinity`, `-Infinity` and `NaN` tokens Python's json module writes, so that
/// strict JSON parsers accept the file.
fn quote_python_constants(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if !in_string
            && let Some(token) = ["-Infinity", "Infinity", "NaN"]
                .into_iter()
                .find(|t| rest.starts_with(t))
        {
            out.push('"');
            out.push_str(token);
            out.push('"');
            rest = &rest[token.len()..];
            continue;
        }
        match c {
            '"' if !escaped => in_string = !in_string,
            _ => {}
        }
        escaped = c == '\\' && !escaped;
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// What a sampler takes from the command line on top of a pipeline's scheduler config.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SamplerOverrides {
    pub eta: Option<f64>,
    pub karras_sigmas: Option<bool>,
    pub solver_order: Option<usize>,
    pub x0_limit: Option<X0Limit>,
}

impl SchedulerConfig {
    /// A diffusers `DDPMScheduler` config for a model trained on `schedule_name` (a diffusers
    /// beta_schedule name) with fixed-small variance and leading spacing, diffusers' defaults.
    pub fn ddpm(
        schedule_name: &str,
        num_train_timesteps: usize,
        (beta_start, beta_end): (f64, f64),
        prediction_type: PredictionType,
        clip_sample: bool,
    ) -> Self {
        Self {
            class_name: "DDPMScheduler".into(),
            num_train_timesteps,
            beta_start,
            beta_end,
            beta_schedule: schedule_name.into(),
            trained_betas: None,
            prediction_type: prediction_type.name().into(),
            clip_sample: Some(clip_sample),
            clip_sample_range: Some(1.0),
            thresholding: false,
            dynamic_thresholding_ratio: default_ratio(),
            sample_max_value: 1.0,
            timestep_spacing: Some("leading".into()),
            steps_offset: 0,
            rescale_betas_zero_snr: false,
            variance_type: Some("fixed_small".into()),
            set_alpha_to_one: None,
            solver: SolverFields::default(),
            metadata: BTreeMap::from([(
                "_diffusers_version".to_string(),
                Value::from(DIFFUSERS_VERSION),
            )]),
        }
    }

    /// Parses scheduler_config.json and rejects what `diffuse` does not implement, naming the field.
    pub fn from_json(text: &str) -> Result<Self> {
        let config: Self = parse_config_json(&quote_python_constants(text), "scheduler")?;
        config.validate()?;
        Ok(config)
    }

    /// The sampler of this config's class.
    pub fn native_sampler(&self) -> Result<SamplerName> {
        SamplerName::for_scheduler_class(&self.class_name).ok_or_else(|| {
            DiffuseError::config(format!(
                "scheduler `{}` is not supported (supported: {})",
                self.class_name,
                SamplerName::scheduler_classes().join(", ")
            ))
        })
    }

    fn validate(&self) -> Result<()> {
        reject_unknown_fields(&self.metadata, "scheduler")?;
        self.native_sampler()?;
        let unsupported = |field: &str, value: &dyn std::fmt::Debug| {
            Err(DiffuseError::config(format!(
                "scheduler config field `{field}` = {value:?} is not supported"
            )))
        };
        let f = &self.solver;
        for (field, on) in [
            ("use_exponential_sigmas", f.use_exponential_sigmas),
            ("use_beta_sigmas", f.use_beta_sigmas),
            ("use_lu_lambdas", f.use_lu_lambdas),
            ("use_flow_sigmas", f.use_flow_sigmas),
            ("use_dynamic_shifting", f.use_dynamic_shifting),
        ] {
            if on == Some(true) {
                return unsupported(field, &true);
            }
        }
        for (field, value) in [
            ("solver_p", &f.solver_p),
            ("shift_terminal", &f.shift_terminal),
        ] {
            if let Some(v) = value.as_ref().filter(|v| !v.is_null()) {
                return unsupported(field, v);
            }
        }
        if let Some(v) = f.algorithm_type.as_deref()
            && !matches!(v, "dpmsolver++" | "sde-dpmsolver++")
        {
            return unsupported("algorithm_type", &v);
        }
        if f.predict_x0 == Some(false) {
            return unsupported("predict_x0", &false);
        }
        if let Some(v) = f.interpolation_type.as_deref().filter(|v| *v != "linear") {
            return unsupported("interpolation_type", &v);
        }
        if let Some(v) = f.timestep_type.as_deref().filter(|v| *v != "discrete") {
            return unsupported("timestep_type", &v);
        }
        if let Some(v) = &self.variance_type
            && (self.class_name != "DDPMScheduler" || v.parse::<DdpmVariance>().is_err())
        {
            return unsupported("variance_type", v);
        }
        self.prediction()?;
        self.spacing()?;
        self.schedule()?;
        self.sampler(None, &SamplerOverrides::default())?;
        Ok(())
    }

    /// The forward process this config describes.
    /// DDPM's reverse variance σ_t² named by `variance_type` (fixed_small unless given).
    pub fn ddpm_variance(&self) -> Result<DdpmVariance> {
        match &self.variance_type {
            Some(v) => v.parse(),
            None => Ok(DdpmVariance::default()),
        }
    }

    pub fn schedule(&self) -> Result<NoiseSchedule> {
        let schedule = match &self.trained_betas {
            Some(betas) if self.rescale_betas_zero_snr => {
                NoiseSchedule::from_betas(rescale_zero_terminal_snr(betas))?
            }
            Some(betas) => NoiseSchedule::from_betas(betas.clone())?,
            None => {
                let kind = BetaSchedule::from_name(
                    &self.beta_schedule,
                    self.beta_start,
                    self.beta_end,
                    (-3.0, 3.0, 1.0),
                )?;
                if kind.diffusers_name().is_none() {
                    return Err(DiffuseError::config(format!(
                        "scheduler config field `beta_schedule` = {:?} is not a diffusers schedule",
                        self.beta_schedule
                    )));
                }
                NoiseSchedule::new(&kind, self.num_train_timesteps, self.rescale_betas_zero_snr)?
            }
        };
        Ok(schedule)
    }

    pub fn prediction(&self) -> Result<PredictionType> {
        self.prediction_type.parse()
    }

    /// The timestep spacing, with the class's diffusers default when the field is absent.
    pub fn spacing(&self) -> Result<TimestepSpacing> {
        match self.timestep_spacing.as_deref() {
            Some(name) => name.parse(),
            None => Ok(match self.class_name.as_str() {
                "DDPMScheduler" | "DDIMScheduler" | "PNDMScheduler" => TimestepSpacing::Leading,
                _ => TimestepSpacing::Linspace,
            }),
        }
    }

    /// Clipping or thresholding of x̂_0 as this config asks for it.
    fn x0_limit(&self) -> X0Limit {
        if self.thresholding {
            X0Limit::Dynamic {
                ratio: self.dynamic_thresholding_ratio,
                max_value: self.sample_max_value,
            }
        } else if self.clip_sample == Some(true) {
            X0Limit::Clip(self.clip_sample_range.unwrap_or(1.0))
        } else {
            X0Limit::None
        }
    }

    /// The sampler named `name` (default: this config's class) with the config's options, as
    /// diffusers' `from_config` would carry them over, and the command line's overrides on top.
    pub fn sampler(
        &self,
        name: Option<SamplerName>,
        overrides: &SamplerOverrides,
    ) -> Result<SamplerKind> {
        let native = self.native_sampler()?;
        let name = name.unwrap_or(native);
        let can = name.capabilities();
        // Which of the config's generic options the diffusers class of `name` honours.
        let limit_applies = match name {
            SamplerName::Ddpm | SamplerName::Ddim => true,
            SamplerName::DpmSolver | SamplerName::DpmSolverSde | SamplerName::UniPc => {
                self.thresholding
            }
            SamplerName::Heun => !self.thresholding,
            _ => false,
        };
        let settings = SamplerSettings {
            eta: overrides.eta,
            x0_limit: overrides.x0_limit.unwrap_or(if limit_applies {
                self.x0_limit()
            } else {
                X0Limit::None
            }),
            variance: self.ddpm_variance()?,
            set_alpha_to_one: self.set_alpha_to_one.filter(|_| can.set_alpha_to_one),
            karras_sigmas: overrides
                .karras_sigmas
                .unwrap_or(can.karras_sigmas && self.solver.use_karras_sigmas == Some(true)),
            solver_order: overrides
                .solver_order
                .or(self.solver.solver_order.filter(|_| can.solver_order)),
        };
        let name = match (name, self.solver.algorithm_type.as_deref()) {
            (SamplerName::DpmSolver, Some("sde-dpmsolver++")) if native == name => {
                SamplerName::DpmSolverSde
            }
            _ => name,
        };
        let mut kind = SamplerKind::configured(name, &settings)?;
        // The class's own options carry over to samplers of the same diffusers class only.
        if name.scheduler_class() == native.scheduler_class() {
            self.apply_class_options(&mut kind)?;
        }
        Ok(kind)
    }

    /// The options only the config's own class has.
    fn apply_class_options(&self, kind: &mut SamplerKind) -> Result<()> {
        let f = &self.solver;
        let final_sigma = f
            .final_sigmas_type
            .as_deref()
            .map(FinalSigma::parse)
            .transpose()?
            .unwrap_or_default();
        let set_range = |sigmas: &mut SigmaSpacing| {
            sigmas.final_sigma = final_sigma;
            sigmas.sigma_min = f.sigma_min;
            sigmas.sigma_max = f.sigma_max;
        };
        match kind {
            SamplerKind::DpmSolver(o) => {
                set_range(&mut o.sigmas);
                o.second_order = match f.solver_type.as_deref() {
                    None | Some("midpoint") => SecondOrderRule::Midpoint,
                    Some("heun") => SecondOrderRule::Heun,
                    Some(other) => {
                        return Err(DiffuseError::config(format!(
                            "scheduler config field `solver_type` = {other:?} is not supported"
                        )));
                    }
                };
                o.lower_order_final = f.lower_order_final.unwrap_or(true);
                o.euler_at_final = f.euler_at_final.unwrap_or(false);
                o.round_karras_timesteps = self.beta_schedule != "squaredcos_cap_v2";
                o.lambda_min_clipped = match &f.lambda_min_clipped {
                    None => f64::NEG_INFINITY,
                    Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NEG_INFINITY),
                    Some(Value::String(s)) if s == "-Infinity" => f64::NEG_INFINITY,
                    Some(other) => {
                        return Err(DiffuseError::config(format!(
                            "scheduler config field `lambda_min_clipped` = {other} is not a number"
                        )));
                    }
                };
            }
            SamplerKind::UniPc(o) => {
                set_range(&mut o.sigmas);
                o.variant = match f.solver_type.as_deref() {
                    None | Some("bh2") => UniPcVariant::Bh2,
                    Some("bh1") => UniPcVariant::Bh1,
                    Some(other) => {
                        return Err(DiffuseError::config(format!(
                            "scheduler config field `solver_type` = {other:?} is not supported"
                        )));
                    }
                };
                o.lower_order_final = f.lower_order_final.unwrap_or(true);
                o.disable_corrector = f.disable_corrector.clone().unwrap_or_default();
            }
            SamplerKind::Euler(o) => set_range(&mut o.sigmas),
            SamplerKind::Pndm(o) => o.skip_prk_steps = f.skip_prk_steps.unwrap_or(false),
            _ => {}
        }
        Ok(())
    }
}
