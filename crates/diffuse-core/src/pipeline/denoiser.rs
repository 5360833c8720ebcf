//! A pipeline's network seen as a sampler's [`Denoiser`].

use burn::tensor::Tensor;

use crate::denoiser::Denoiser;
use crate::error::Result;
use crate::nn::network::DenoisingNetwork;
use crate::process::forward::PredictionType;
use crate::process::variance::split_variance_output;

/// A network seen as a [`Denoiser`]. A network with a learned variance (out = 2 × in channels)
/// predicts with its first C channels and gives its variance output v in the other C.
pub struct NetworkDenoiser<'a> {
    network: &'a DenoisingNetwork,
    prediction_type: PredictionType,
}

impl<'a> NetworkDenoiser<'a> {
    pub fn new(network: &'a DenoisingNetwork, prediction_type: PredictionType) -> Self {
        Self {
            network,
            prediction_type,
        }
    }
}

impl Denoiser<4> for NetworkDenoiser<'_> {
    fn prediction_type(&self) -> PredictionType {
        self.prediction_type
    }

    fn null_class(&self) -> Option<usize> {
        self.network.class_table_size().map(|size| size - 1)
    }

    fn predict(
        &self,
        x_t: Tensor<4>,
        timesteps: &[f64],
        class_labels: Option<&[usize]>,
    ) -> Result<Tensor<4>> {
        Ok(self.predict_with_variance(x_t, timesteps, class_labels)?.0)
    }

    fn predict_with_variance(
        &self,
        x_t: Tensor<4>,
        timesteps: &[f64],
        class_labels: Option<&[usize]>,
    ) -> Result<(Tensor<4>, Option<Tensor<4>>)> {
        let channels = x_t.dims()[1];
        let out = self.network.forward(x_t, timesteps, class_labels)?;
        if out.dims()[1] == 2 * channels {
            let (prediction, variance) = split_variance_output(out, channels)?;
            Ok((prediction, Some(variance)))
        } else {
            Ok((out, None))
        }
    }
}
