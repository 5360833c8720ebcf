fn main() { diffuse_core::hello(); let _d = burn::tensor::Device::flex(); }
