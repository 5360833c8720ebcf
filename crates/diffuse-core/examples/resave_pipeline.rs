//! Loads a diffusers pipeline folder and writes it again with `diffuse`'s writer, so that the
//! result can be checked in Python (tools/reference/check_resaved_pipeline.py).
//!
//! cargo run -p diffuse-core --example resave_pipeline -- IN_DIR OUT_DIR

use std::path::PathBuf;

use burn::tensor::Device;
use diffuse_core::pipeline::DiffusionPipeline;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [input, output] = args.as_slice() else {
        return Err("usage: resave_pipeline IN_DIR OUT_DIR".into());
    };
    DiffusionPipeline::load(input, &Device::flex())?.save(output)?;
    println!("wrote {}", output.display());
    Ok(())
}
