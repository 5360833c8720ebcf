//! The sampler registry: every sampler by name, what it can be configured with, the diffusers
//! scheduler class it matches, and its configured form [`SamplerKind`].

use std::fmt;
use std::str::FromStr;

use super::ddim::DdimOptions;
use super::ddpm::DdpmOptions;
use super::dpm_solver::DpmSolverOptions;
use super::grid::SigmaSpacing;
use super::pndm::PndmOptions;
use super::unipc::UniPcOptions;
use super::x0_limit::X0Limit;
use crate::error::{DiffuseError, Result};
use crate::process::variance::DdpmVariance;

/// A sampler, by the name the command line and `diffuse serve` use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SamplerName {
    Ddpm,
    Ddim,
    DpmSolver,
    DpmSolverSde,
    UniPc,
    Euler,
    EulerAncestral,
    Heun,
    Pndm,
}

/// Sampler names accepted on the command line (the spellings of [`SamplerName::ALL`]).
pub const SAMPLER_NAMES: &str =
    "ddpm, ddim, dpmsolver++, dpmsolver++-sde, unipc, euler, euler-ancestral, heun, pndm";

/// What a sampler can be configured with, and what a step costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Model evaluations per step (Heun evaluates twice).
    pub evaluations_per_step: usize,
    /// The highest order of accuracy its steps reach (DPM-Solver++ and UniPC: with
    /// `--solver-order 3`; PNDM: fourth-order linear multistep).
    pub max_order: usize,
    /// Whether it has a configurable solver order (1–3).
    pub solver_order: bool,
    /// Whether its σ can be spaced as Karras et al. do.
    pub karras_sigmas: bool,
    /// Whether it forms an x̂₀ that can be clipped or thresholded (PNDM steps on ε directly;
    /// Euler ancestral, like diffusers', never clips).
    pub x0_limit: bool,
    /// Whether it takes DDIM's η.
    pub eta: bool,
    /// Whether the ᾱ after its last step can be set to 1 (diffusers' `set_alpha_to_one`).
    pub set_alpha_to_one: bool,
    /// Whether ParaDiGMS can run it: its step is a pure function of x, the model output and the
    /// x̂₀ history.
    pub parallel: bool,
}

const ONE_STEP: Capabilities = Capabilities {
    evaluations_per_step: 1,
    max_order: 1,
    solver_order: false,
    karras_sigmas: false,
    x0_limit: true,
    eta: false,
    set_alpha_to_one: false,
    parallel: false,
};

const SOLVER: Capabilities = Capabilities {
    max_order: 3,
    solver_order: true,
    karras_sigmas: true,
    ..ONE_STEP
};

impl SamplerName {
    /// Every sampler, in the order of [`SAMPLER_NAMES`].
    pub const ALL: [Self; 9] = [
        Self::Ddpm,
        Self::Ddim,
        Self::DpmSolver,
        Self::DpmSolverSde,
        Self::UniPc,
        Self::Euler,
        Self::EulerAncestral,
        Self::Heun,
        Self::Pndm,
    ];

    /// The name as the command line spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ddpm => "ddpm",
            Self::Ddim => "ddim",
            Self::DpmSolver => "dpmsolver++",
            Self::DpmSolverSde => "dpmsolver++-sde",
            Self::UniPc => "unipc",
            Self::Euler => "euler",
            Self::EulerAncestral => "euler-ancestral",
            Self::Heun => "heun",
            Self::Pndm => "pndm",
        }
    }

    /// The diffusers scheduler class this sampler matches.
    pub fn scheduler_class(self) -> &'static str {
        match self {
            Self::Ddpm => "DDPMScheduler",
            Self::Ddim => "DDIMScheduler",
            Self::DpmSolver | Self::DpmSolverSde => "DPMSolverMultistepScheduler",
            Self::UniPc => "UniPCMultistepScheduler",
            Self::Euler => "EulerDiscreteScheduler",
            Self::EulerAncestral => "EulerAncestralDiscreteScheduler",
            Self::Heun => "HeunDiscreteScheduler",
            Self::Pndm => "PNDMScheduler",
        }
    }

    /// The sampler a diffusers scheduler class is by default (its `algorithm_type` can make a
    /// DPMSolverMultistepScheduler the SDE variant), `None` for a class `diffuse` lacks.
    pub fn for_scheduler_class(class: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.scheduler_class() == class)
    }

    /// The scheduler classes `diffuse` reads, each once.
    pub fn scheduler_classes() -> Vec<&'static str> {
        let mut classes: Vec<&str> = Self::ALL.iter().map(|s| s.scheduler_class()).collect();
        classes.dedup();
        classes
    }

    pub fn capabilities(self) -> Capabilities {
        match self {
            Self::Ddpm => Capabilities {
                parallel: true,
                ..ONE_STEP
            },
            Self::Ddim => Capabilities {
                eta: true,
                set_alpha_to_one: true,
                parallel: true,
                ..ONE_STEP
            },
            Self::DpmSolver | Self::DpmSolverSde => Capabilities {
                parallel: true,
                ..SOLVER
            },
            Self::UniPc => SOLVER,
            Self::Euler => Capabilities {
                karras_sigmas: true,
                ..ONE_STEP
            },
            Self::EulerAncestral => Capabilities {
                x0_limit: false,
                ..ONE_STEP
            },
            Self::Heun => Capabilities {
                evaluations_per_step: 2,
                max_order: 2,
                karras_sigmas: true,
                ..ONE_STEP
            },
            Self::Pndm => Capabilities {
                max_order: 4,
                x0_limit: false,
                set_alpha_to_one: true,
                ..ONE_STEP
            },
        }
    }

    /// How many steps spend at most `evaluations` model evaluations (rounded up).
    pub fn steps_for_evaluations(self, evaluations: usize) -> usize {
        evaluations.div_ceil(self.capabilities().evaluations_per_step)
    }
}

impl fmt::Display for SamplerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SamplerName {
    type Err = DiffuseError;

    fn from_str(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == name)
            .ok_or_else(|| DiffuseError::UnknownName {
                kind: "sampler",
                name: name.to_string(),
                expected: SAMPLER_NAMES,
            })
    }
}

/// Options of the σ-space samplers (Euler, Euler ancestral, Heun).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SigmaSamplerOptions {
    pub sigmas: SigmaSpacing,
    pub x0_limit: X0Limit,
}

/// A sampler and its options.
#[derive(Debug, Clone, PartialEq)]
pub enum SamplerKind {
    /// Ancestral sampling (Ho et al. 2020, Algorithm 2).
    Ddpm(DdpmOptions),
    /// DDIM (Song et al. 2021), η ≥ 0.
    Ddim(DdimOptions),
    /// DPM-Solver++ multistep, ODE or SDE (Lu et al. 2022b).
    DpmSolver(DpmSolverOptions),
    /// UniPC predictor–corrector (Zhao et al. 2023).
    UniPc(UniPcOptions),
    /// Euler on the probability-flow ODE in σ (Karras et al. 2022, Algorithm 1).
    Euler(SigmaSamplerOptions),
    /// Euler with ancestral noise (k-diffusion).
    EulerAncestral(SigmaSamplerOptions),
    /// Heun's second-order method (Karras et al. 2022, Algorithm 2).
    Heun(SigmaSamplerOptions),
    /// Pseudo numerical methods (Liu et al. 2022).
    Pndm(PndmOptions),
}

/// What a sampler can be configured with by name; each sampler takes the settings that apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SamplerSettings {
    /// DDIM's η; giving it to another sampler is an error.
    pub eta: Option<f64>,
    /// Clipping or dynamic thresholding of x̂_0 (not for PNDM and Euler ancestral).
    pub x0_limit: X0Limit,
    /// DDPM's reverse variance.
    pub variance: DdpmVariance,
    /// DDIM's and PNDM's ᾱ after the last step: 1 or ᾱ_0 (defaults: DDIM 1, PNDM ᾱ_0).
    pub set_alpha_to_one: Option<bool>,
    /// Karras et al.'s σ spacing (dpmsolver++, unipc, euler, heun).
    pub karras_sigmas: bool,
    /// Order of dpmsolver++ (1–3) and unipc (1–3); default 2.
    pub solver_order: Option<usize>,
}

impl SamplerSettings {
    /// Refuses settings that do not apply to `name`, and out-of-range values.
    fn check_for(&self, name: SamplerName) -> Result<()> {
        self.x0_limit.validate()?;
        let can = name.capabilities();
        let reject = |what: &str, given: bool| {
            if given {
                Err(DiffuseError::config(format!(
                    "{what} does not apply to the {name} sampler"
                )))
            } else {
                Ok(())
            }
        };
        reject("eta (--eta)", self.eta.is_some() && !can.eta)?;
        reject("--karras-sigmas", self.karras_sigmas && !can.karras_sigmas)?;
        reject(
            "--solver-order",
            self.solver_order.is_some() && !can.solver_order,
        )?;
        reject(
            "clipping/thresholding of x0",
            self.x0_limit != X0Limit::None && !can.x0_limit,
        )?;
        reject(
            "set_alpha_to_one",
            self.set_alpha_to_one.is_some() && !can.set_alpha_to_one,
        )?;
        let order = self.order();
        if can.solver_order && !(1..=3).contains(&order) {
            return Err(DiffuseError::config(format!(
                "the solver order must be 1, 2 or 3 (got {order})"
            )));
        }
        let eta = self.eta.unwrap_or(0.0);
        if !(eta.is_finite() && eta >= 0.0) {
            return Err(DiffuseError::config(format!(
                "eta (--eta) must be a non-negative number (got {eta})"
            )));
        }
        Ok(())
    }

    fn order(&self) -> usize {
        self.solver_order.unwrap_or(2)
    }

    fn sigma_options(&self) -> SigmaSamplerOptions {
        SigmaSamplerOptions {
            sigmas: self.sigmas(),
            x0_limit: self.x0_limit,
        }
    }

    fn sigmas(&self) -> SigmaSpacing {
        SigmaSpacing {
            karras: self.karras_sigmas,
            ..SigmaSpacing::default()
        }
    }
}

impl SamplerKind {
    /// The sampler `name` with `settings`; a setting that does not apply to it is an error.
    pub fn configured(name: SamplerName, settings: &SamplerSettings) -> Result<Self> {
        settings.check_for(name)?;
        let s = settings;
        Ok(match name {
            SamplerName::Ddpm => Self::Ddpm(DdpmOptions {
                variance: s.variance,
                x0_limit: s.x0_limit,
            }),
            SamplerName::Ddim => Self::Ddim(DdimOptions {
                eta: s.eta.unwrap_or(0.0),
                x0_limit: s.x0_limit,
                set_alpha_to_one: s.set_alpha_to_one.unwrap_or(true),
                ..DdimOptions::default()
            }),
            SamplerName::DpmSolver | SamplerName::DpmSolverSde => {
                Self::DpmSolver(DpmSolverOptions {
                    order: s.order(),
                    stochastic: name == SamplerName::DpmSolverSde,
                    x0_limit: s.x0_limit,
                    sigmas: s.sigmas(),
                    ..DpmSolverOptions::default()
                })
            }
            SamplerName::UniPc => Self::UniPc(UniPcOptions {
                order: s.order(),
                x0_limit: s.x0_limit,
                sigmas: s.sigmas(),
                ..UniPcOptions::default()
            }),
            SamplerName::Euler => Self::Euler(s.sigma_options()),
            SamplerName::EulerAncestral => Self::EulerAncestral(s.sigma_options()),
            SamplerName::Heun => Self::Heun(s.sigma_options()),
            SamplerName::Pndm => Self::Pndm(PndmOptions {
                set_alpha_to_one: s.set_alpha_to_one.unwrap_or(false),
                ..PndmOptions::default()
            }),
        })
    }

    pub fn name(&self) -> SamplerName {
        match self {
            Self::Ddpm(_) => SamplerName::Ddpm,
            Self::Ddim(_) => SamplerName::Ddim,
            Self::DpmSolver(o) if o.stochastic => SamplerName::DpmSolverSde,
            Self::DpmSolver(_) => SamplerName::DpmSolver,
            Self::UniPc(_) => SamplerName::UniPc,
            Self::Euler(_) => SamplerName::Euler,
            Self::EulerAncestral(_) => SamplerName::EulerAncestral,
            Self::Heun(_) => SamplerName::Heun,
            Self::Pndm(_) => SamplerName::Pndm,
        }
    }

    /// Whether the model is evaluated on x̃ = x_t/√ᾱ_t (σ-space samplers).
    pub(crate) fn in_sigma_space(&self) -> bool {
        matches!(
            self,
            Self::Euler(_) | Self::EulerAncestral(_) | Self::Heun(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_and_the_list_spells_them_all() {
        for name in SamplerName::ALL {
            assert_eq!(name.as_str().parse::<SamplerName>().unwrap(), name);
        }
        let spelled: Vec<&str> = SamplerName::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(spelled.join(", "), SAMPLER_NAMES);
        assert!("euler_a".parse::<SamplerName>().is_err());
    }

    #[test]
    fn a_configured_sampler_reports_its_name() {
        for name in SamplerName::ALL {
            let kind = SamplerKind::configured(name, &SamplerSettings::default()).unwrap();
            assert_eq!(kind.name(), name);
        }
    }

    #[test]
    fn each_scheduler_class_names_its_default_sampler() {
        assert_eq!(SamplerName::scheduler_classes().len(), 8);
        assert_eq!(
            SamplerName::for_scheduler_class("DPMSolverMultistepScheduler"),
            Some(SamplerName::DpmSolver)
        );
        assert_eq!(
            SamplerName::for_scheduler_class("EulerAncestralDiscreteScheduler"),
            Some(SamplerName::EulerAncestral)
        );
        assert_eq!(
            SamplerName::for_scheduler_class("LMSDiscreteScheduler"),
            None
        );
    }
}
