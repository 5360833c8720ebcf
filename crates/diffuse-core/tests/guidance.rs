//! Guidance on an exact class-conditional denoiser: class k is mixture component k, the null
//! class is the whole mixture, so every guided prediction can be checked against closed forms.

use burn::tensor::{DType, Device, Tensor};
use diffuse_core::Result;
use diffuse_core::denoiser::Denoiser;
use diffuse_core::forward::PredictionType;
use diffuse_core::gmm::{GaussianMixture, GmmDenoiser};
use diffuse_core::guidance::{CfgSettings, ClassifierFreeGuidance};
use diffuse_core::schedule::{BetaSchedule, NoiseSchedule};
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
            .map(|k| {
                let spec = format!(
                    r#"{{"weights":[1],"means":[{:?}],"stds":[{:?}]}}"#,
                    mixture.means()[k],
                    mixture.stds()[k]
                );
                GmmDenoiser::new(
                    GaussianMixture::from_json(&spec).unwrap(),
                    schedule.clone(),
                    PredictionType::Epsilon,
                )
            })
            .collect();
        let unconditional = GmmDenoiser::new(mixture, schedule.clone(), PredictionType::Epsilon);
        Self {
            classes,
            unconditional,
        }
    }
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
