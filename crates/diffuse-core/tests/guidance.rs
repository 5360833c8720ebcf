//! Guidance on an exact class-conditional denoiser: class k is mixture component k, the null
//! class is the whole mixture, so every guided prediction can be checked against closed forms.

use burn::tensor::{DType, Device, Tensor};
use diffuse_core::Result;
use diffuse_core::denoiser::Denoiser;
use diffuse_core::gmm::{GaussianMixture, GmmDenoiser};
use diffuse_core::process::forward::PredictionType;
use diffuse_core::process::schedule::{BetaSchedule, NoiseSchedule};
use diffuse_core::sampling::guidance::{
    CfgSettings, ClassGradient, ClassifierFreeGuidance, ClassifierGuidance,
};
use diffuse_core::tensor_ops::{from_host_f64, to_host_f64};

const THREE_BLOBS: &str = include_str!("../../../examples/mixtures/three-blobs.json");

/// p(x | class k) = component k; the null class (index K) is the full mixture.
struct ClassMixture {
    classes: Vec<GmmDenoiser>,
    unconditional: GmmDenoiser,
}

impl ClassMixture {
    fn new(schedule: &NoiseSchedule) -> Self {
        let mixture = GaussianMixture::from_json(THREE_BLOBS).unwrap();
        let classes = (0..mixture.weights().len())
            .map(|k| component(&mixture, k, schedule, PredictionType::Epsilon))
            .collect();
        let unconditional = GmmDenoiser::new(mixture, schedule.clone(), PredictionType::Epsilon);
        Self {
            classes,
            unconditional,
        }
    }
}

/// The exact denoiser of mixture component k alone: p(x | class k).
fn component(
    mixture: &GaussianMixture,
    k: usize,
    schedule: &NoiseSchedule,
    prediction_type: PredictionType,
) -> GmmDenoiser {
    let spec = format!(
        r#"{{"weights":[1],"means":[{:?}],"stds":[{:?}]}}"#,
        mixture.means()[k],
        mixture.stds()[k]
    );
    GmmDenoiser::new(
        GaussianMixture::from_json(&spec).unwrap(),
        schedule.clone(),
        prediction_type,
    )
}

impl Denoiser<2> for ClassMixture {
    fn prediction_type(&self) -> PredictionType {
        PredictionType::Epsilon
    }

    fn null_class(&self) -> Option<usize> {
        Some(self.classes.len())
    }

    fn predict(
        &self,
        x_t: Tensor<2>,
        timesteps: &[f64],
        labels: Option<&[usize]>,
    ) -> Result<Tensor<2>> {
        let labels = labels.expect("class labels");
        let rows = (0..labels.len())
            .map(|i| {
                let model = self.classes.get(labels[i]).unwrap_or(&self.unconditional);
                model.predict(x_t.clone().narrow(0, i, 1), &timesteps[i..=i], None)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(rows, 0))
    }
}

fn setup() -> (NoiseSchedule, Tensor<2>, Vec<f64>, Vec<usize>) {
    let linear = BetaSchedule::Linear {
        beta_start: 1e-4,
        beta_end: 0.02,
    };
    let schedule = NoiseSchedule::new(&linear, 1000, false).unwrap();
    let x = from_host_f64(
        vec![0.3, -1.2, 1.5, 0.4, -0.7, 0.9, 2.0, -2.0],
        [4, 2],
        &Device::flex(),
        DType::F64,
    );
    (
        schedule,
        x,
        vec![600.0, 600.0, 100.0, 900.0],
        vec![0, 1, 2, 1],
    )
}

fn host(t: Tensor<2>) -> Vec<f64> {
    to_host_f64(t).unwrap()
}

fn cfg(scale: f64, rescale: f64, interval: Option<(f64, f64)>) -> CfgSettings {
    CfgSettings {
        scale,
        rescale,
        interval,
    }
}

#[test]
fn weight_one_is_the_conditional_model() {
    let (schedule, x, t, labels) = setup();
    let model = ClassMixture::new(&schedule);
    let guided =
        ClassifierFreeGuidance::new(&model, &schedule, model.null_class(), cfg(1.0, 0.0, None))
            .unwrap();
    let conditional = host(model.predict(x.clone(), &t, Some(&labels)).unwrap());
    assert_eq!(
        host(guided.predict(x, &t, Some(&labels)).unwrap()),
        conditional
    );
}

#[test]
fn rescale_zero_is_plain_cfg() {
    let (schedule, x, t, labels) = setup();
    let model = ClassMixture::new(&schedule);
    let w = 4.0;
    let guided =
        ClassifierFreeGuidance::new(&model, &schedule, model.null_class(), cfg(w, 0.0, None))
            .unwrap();
    let c = host(model.predict(x.clone(), &t, Some(&labels)).unwrap());
    let u = host(model.predict(x.clone(), &t, Some(&[3, 3, 3, 3])).unwrap());
    let expected: Vec<f64> = c.iter().zip(&u).map(|(c, u)| u + w * (c - u)).collect();
    let ours = host(guided.predict(x, &t, Some(&labels)).unwrap());
    for (a, b) in ours.iter().zip(&expected) {
        assert!((a - b).abs() < 1e-12, "{ours:?} vs {expected:?}");
    }
}

#[test]
fn rescale_one_restores_the_conditional_spread() {
    let (schedule, x, t, labels) = setup();
    let model = ClassMixture::new(&schedule);
    let guided =
        ClassifierFreeGuidance::new(&model, &schedule, model.null_class(), cfg(7.5, 1.0, None))
            .unwrap();
    let c = host(model.predict(x.clone(), &t, Some(&labels)).unwrap());
    let ours = host(guided.predict(x, &t, Some(&labels)).unwrap());
    let std = |v: &[f64]| ((v[0] - v[1]).powi(2) / 2.0).sqrt();
    for (g, c) in ours.chunks(2).zip(c.chunks(2)) {
        assert!((std(g) - std(c)).abs() < 1e-12, "{g:?} vs {c:?}");
    }
}

#[test]
fn guidance_applies_only_inside_its_interval() {
    let (schedule, x, t, labels) = setup();
    let model = ClassMixture::new(&schedule);
    // σ at t = 100 is about 0.34, at 600 about 6.1, at 900 about 59: guide only t = 600.
    let guided = ClassifierFreeGuidance::new(
        &model,
        &schedule,
        model.null_class(),
        cfg(5.0, 0.0, Some((3.0, 10.0))),
    )
    .unwrap();
    let plain =
        ClassifierFreeGuidance::new(&model, &schedule, model.null_class(), cfg(5.0, 0.0, None))
            .unwrap();
    let c = host(model.predict(x.clone(), &t, Some(&labels)).unwrap());
    let everywhere = host(plain.predict(x.clone(), &t, Some(&labels)).unwrap());
    let ours = host(guided.predict(x, &t, Some(&labels)).unwrap());
    let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(a, b)| (a - b).abs() < 1e-12);
    assert!(
        close(&ours[..4], &everywhere[..4]),
        "rows at t = 600 are guided"
    );
    assert!(
        close(&ours[4..], &c[4..]),
        "rows at t = 100 and 900 are not"
    );
    assert!(
        !close(&ours[..4], &c[..4]),
        "guidance changes the guided rows"
    );
}

#[test]
fn guidance_on_an_unconditional_model_is_an_error() {
    let (schedule, ..) = setup();
    let mixture = GaussianMixture::from_json(THREE_BLOBS).unwrap();
    let model = GmmDenoiser::new(mixture, schedule.clone(), PredictionType::Epsilon);
    let err =
        ClassifierFreeGuidance::new(&model, &schedule, model.null_class(), cfg(3.0, 0.0, None))
            .err()
            .expect("an unconditional model cannot be guided");
    assert!(err.to_string().contains("class-conditional"), "{err}");
    let bad = ClassifierFreeGuidance::new(&model, &schedule, Some(0), cfg(3.0, 1.5, None));
    assert!(bad.is_err(), "φ outside [0, 1] is rejected");
}

/// The exact class posterior p(k | x_t) of the mixture, differentiated by hand: with
/// x_t | k ~ N(a μ_k, diag(a² s_k² + σ²)), ∇ log p(k | x_t) = g_k − Σ_j p(j | x_t) g_j where
/// g_j = −(x_t − a μ_j) / (a² s_j² + σ²).
struct ExactClassPosterior<'a> {
    mixture: &'a GaussianMixture,
    schedule: &'a NoiseSchedule,
}

impl ClassGradient<2> for ExactClassPosterior<'_> {
    fn log_prob_gradient(
        &self,
        x_t: Tensor<2>,
        timesteps: &[f64],
        labels: &[usize],
    ) -> Result<Tensor<2>> {
        let (device, dtype) = (x_t.device(), x_t.dtype());
        let dim = self.mixture.dim();
        let x = to_host_f64(x_t)?;
        let mut gradient = Vec::with_capacity(x.len());
        for (row, x) in x.chunks(dim).enumerate() {
            let alpha_bar = self.schedule.alpha_bar_at(timesteps[row]);
            let (a, sigma) = (alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt());
            let posterior = self.mixture.responsibilities(x, a, sigma);
            let score_of = |j: usize, d: usize| {
                let (mu, s) = (self.mixture.means()[j][d], self.mixture.stds()[j][d]);
                -(x[d] - a * mu) / (a * a * s * s + sigma * sigma)
            };
            gradient.extend((0..dim).map(|d| {
                let mean_score: f64 = (0..posterior.len())
                    .map(|j| posterior[j] * score_of(j, d))
                    .sum();
                score_of(labels[row], d) - mean_score
            }));
        }
        Ok(from_host_f64(
            gradient,
            [timesteps.len(), dim],
            &device,
            dtype,
        ))
    }
}

/// By Bayes, ∇ log p(x_t | y) = ∇ log p(x_t) + ∇ log p(y | x_t): classifier guidance at scale 1
/// with the exact class posterior turns the unconditional model into the conditional one, for
/// every parameterisation; scale 0 leaves it unchanged.
#[test]
fn exact_classifier_guidance_at_scale_one_is_the_conditional_model() {
    let (schedule, x, t, labels) = setup();
    let mixture = GaussianMixture::from_json(THREE_BLOBS).unwrap();
    let posterior = ExactClassPosterior {
        mixture: &mixture,
        schedule: &schedule,
    };
    for prediction_type in [
        PredictionType::Epsilon,
        PredictionType::Sample,
        PredictionType::VPrediction,
    ] {
        let model = GmmDenoiser::new(mixture.clone(), schedule.clone(), prediction_type);
        let unguided = host(model.predict(x.clone(), &t, None).unwrap());
        let at = |scale: f64| {
            let guided = ClassifierGuidance::new(&model, &posterior, &schedule, scale).unwrap();
            host(guided.predict(x.clone(), &t, Some(&labels)).unwrap())
        };
        let (at_zero, at_one) = (at(0.0), at(1.0));
        for (row, &label) in labels.iter().enumerate() {
            let conditional = component(&mixture, label, &schedule, prediction_type);
            let expected = host(
                conditional
                    .predict(x.clone().narrow(0, row, 1), &t[row..=row], None)
                    .unwrap(),
            );
            let ours = &at_one[2 * row..2 * row + 2];
            for (a, b) in ours.iter().zip(&expected) {
                assert!(
                    (a - b).abs() < 1e-9 * (1.0 + b.abs()),
                    "{prediction_type:?} row {row}: {ours:?} vs {expected:?}"
                );
            }
        }
        assert!(
            at_zero
                .iter()
                .zip(&unguided)
                .all(|(a, b)| (a - b).abs() < 1e-12),
            "{prediction_type:?}: scale 0 is the unguided model"
        );
    }
    let model = GmmDenoiser::new(mixture.clone(), schedule.clone(), PredictionType::Epsilon);
    assert!(ClassifierGuidance::new(&model, &posterior, &schedule, -1.0).is_err());
    let guided = ClassifierGuidance::new(&model, &posterior, &schedule, 1.0).unwrap();
    let err = guided.predict(x, &t, None).expect_err("needs labels");
    assert!(err.to_string().contains("target class"), "{err}");
}
