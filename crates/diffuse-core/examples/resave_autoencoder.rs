//! Loads a diffusers `vae/` component folder and writes it again with `diffuse`'s writer, so that
//! the result can be checked in Python (tools/reference/check_resaved_autoencoder.py).
//!
//! cargo run -p diffuse-core --example resave_autoencoder -- IN_DIR OUT_DIR

use std::path::PathBuf;

use burn::tensor::Device;
use diffuse_core::nn::autoencoder::AutoencoderKL;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [input, output] = args.as_slice() else {
        return Err("usage: resave_autoencoder IN_DIR OUT_DIR".into());
    };
    AutoencoderKL::load(input, &Device::flex())?.save(output)?;
    println!("wrote {}", output.display());
    Ok(())
}
