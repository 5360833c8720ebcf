//! The `diffuse` binary as a user runs it.

use std::path::Path;
use std::process::{Command, Output};

use diffuse_core::io::read_safetensors;
use serde_json::Value;

fn diffuse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .args(args)
        .output()
        .expect("the diffuse binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A user error: non-zero exit, a one-line message that starts with `error:` and names `needle`.
fn assert_clean_error(args: &[&str], needle: &str) {
    let out = diffuse(args);
    let err = stderr(&out);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    assert!(err.starts_with("error:"), "{args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: '{needle}' not in: {err}");
}

const MIXTURE: &str = "examples/mixtures/three-blobs.json";

#[test]
fn schedule_json_has_the_documented_arrays() {
    let out = diffuse(&[
        "schedule",
        "--beta-schedule",
        "scaled-linear",
        "--beta-start",
        "0.00085",
        "--beta-end",
        "0.012",
        "--num-train-timesteps",
        "1000",
        "--rescale-zero-snr",
        "--num-inference-steps",
        "10",
        "--timestep-spacing",
        "trailing",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["betas"].as_array().unwrap().len(), 1000);
    let alphas = json["alphas_cumprod"].as_array().unwrap();
    assert_eq!(alphas[999].as_f64().unwrap(), 0.0);
    let timesteps: Vec<u64> = json["timesteps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect();
    assert_eq!(timesteps, [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]);
}

#[test]
fn sample_writes_count_by_dim_samples() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.safetensors");
    let out = diffuse(&[
        "sample",
        "--gmm",
        MIXTURE,
        "--sampler",
        "ddim",
        "--steps",
        "10",
        "--eta",
        "0.5",
        "--n",
        "7",
        "--seed",
        "3",
        "--out-tensor",
        path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let tensors = read_safetensors(&path).unwrap();
    assert_eq!(tensors["samples"].shape, vec![7, 2]);
    assert!(tensors["samples"].values.iter().all(|v| v.is_finite()));
}

#[test]
fn help_explains_every_subcommand() {
    for sub in [
        vec!["--help"],
        vec!["schedule", "--help"],
        vec!["sample", "--help"],
        vec!["demo", "--help"],
        vec!["train", "--help"],
        vec!["train-classifier", "--help"],
        vec!["bench", "train", "--help"],
        vec!["vae", "encode", "--help"],
        vec!["vae", "decode", "--help"],
    ] {
        let out = diffuse(&sub);
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage:"), "{sub:?}");
    }
    let sample_help = String::from_utf8_lossy(&diffuse(&["sample", "--help"]).stdout).into_owned();
    for flag in [
        "--gmm",
        "--sampler",
        "--steps",
        "--eta",
        "--n ",
        "--seed",
        "--out-tensor",
        "--prediction-type",
    ] {
        assert!(
            sample_help.contains(flag),
            "sample --help does not mention {flag}"
        );
    }
}

#[test]
fn bad_inputs_are_clear_errors() {
    assert_clean_error(
        &["schedule", "--beta-schedule", "quadratic", "--json"],
        "quadratic",
    );
    assert_clean_error(
        &["schedule", "--num-train-timesteps", "0", "--json"],
        "at least 1",
    );
    assert_clean_error(
        &["schedule", "--num-inference-steps", "1001", "--json"],
        "exceed the 1000 training timesteps",
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.safetensors");
    let out = out.to_str().unwrap();
    let sample = |gmm: &str, extra: &[&str]| {
        let mut args = vec!["sample", "--gmm", gmm, "--n", "2", "--out-tensor", out];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>, needle: &str| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_clean_error(&refs, needle);
    };
    run(sample(MIXTURE, &["--steps", "2000"]), "exceed");
    run(
        sample(MIXTURE, &["--sampler", "lms"]),
        "unknown sampler 'lms'",
    );
    run(
        sample(MIXTURE, &["--sampler", "dpmsolver++", "--steps", "1001"]),
        "exceed the 1000 training timesteps",
    );
    run(
        sample(MIXTURE, &["--sampler", "pndm", "--karras-sigmas"]),
        "--karras-sigmas does not apply to the pndm sampler",
    );
    run(
        sample(MIXTURE, &["--sampler", "unipc", "--solver-order", "5"]),
        "solver order must be 1, 2 or 3",
    );
    run(
        sample(MIXTURE, &["--guidance-scale", "3", "--class-labels", "0"]),
        "class-conditional",
    );
    run(
        sample(MIXTURE, &["--sampler", "euler", "--parallel"]),
        "parallel sampling supports ddpm, ddim and dpmsolver++",
    );
    run(
        sample(MIXTURE, &["--sampler", "ddpm", "--eta", "1"]),
        "--eta",
    );
    run(
        sample(
            MIXTURE,
            &["--sampler", "ddpm", "--variance-type", "learned-range"],
        ),
        "needs a model that outputs its variance",
    );
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let malformed = write("malformed.json", "{\"weights\": [1], \"means\": [[0, 0]]");
    run(sample(&malformed, &[]), "malformed mixture JSON");
    let negative = write(
        "negative.json",
        r#"{"weights":[1],"means":[[0,0]],"stds":[[-0.5]]}"#,
    );
    run(
        sample(&negative, &[]),
        "standard deviations must be positive",
    );
    run(sample("no/such/mixture.json", &[]), "no/such/mixture.json");
    let blocked = dir.path().join("not-a-dir");
    std::fs::write(&blocked, "").unwrap();
    let unwritable = blocked.join("x.safetensors");
    assert_clean_error(
        &[
            "sample",
            "--gmm",
            MIXTURE,
            "--n",
            "2",
            "--steps",
            "2",
            "--out-tensor",
            unwritable.to_str().unwrap(),
        ],
        "writing samples",
    );
    assert!(!Path::new(out).exists());
}

/// Every sampler runs from the command line on the mixture, and ParaDiGMS reports its rounds.
#[test]
fn every_sampler_runs_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.safetensors");
    for sampler in [
        "ddpm",
        "ddim",
        "dpmsolver++",
        "dpmsolver++-sde",
        "unipc",
        "euler",
        "euler-ancestral",
        "heun",
        "pndm",
    ] {
        let output = diffuse(&[
            "sample",
            "--gmm",
            MIXTURE,
            "--scheduler",
            sampler,
            "--steps",
            "12",
            "--n",
            "3",
            "--out-tensor",
            out.to_str().unwrap(),
        ]);
        assert!(output.status.success(), "{sampler}: {}", stderr(&output));
        let samples = &read_safetensors(&out).unwrap()["samples"];
        assert_eq!(samples.shape, [3, 2], "{sampler}");
        assert!(samples.values.iter().all(|v| v.is_finite()), "{sampler}");
    }
    let output = diffuse(&[
        "sample",
        "--gmm",
        MIXTURE,
        "--scheduler",
        "dpmsolver++",
        "--karras-sigmas",
        "--steps",
        "40",
        "--n",
        "3",
        "--parallel",
        "--window",
        "10",
        "--out-tensor",
        out.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("sequential rounds instead of 40"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn sample_pipeline_reproduces_diffusers_ddim_from_its_init_noise() {
    let fixture = Path::new("crates/diffuse-core/tests/fixtures/unet/class_scaleshift_gray");
    let io = read_safetensors(&fixture.join("io.safetensors")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let noise = dir.path().join("noise.safetensors");
    diffuse_core::io::write_safetensors(&noise, &[("noise", &io["init_noise"])]).unwrap();
    let (out, grid) = (
        dir.path().join("x.safetensors"),
        dir.path().join("grid.png"),
    );
    let pipeline = fixture.join("pipeline");
    let args = [
        "sample",
        "--pipeline",
        pipeline.to_str().unwrap(),
        "--scheduler",
        "ddim",
        "--steps",
        "20",
        "--n",
        "2",
        "--class-labels",
        "0,7",
        "--init-noise",
        noise.to_str().unwrap(),
        "--out-tensor",
        out.to_str().unwrap(),
        "--out",
        grid.to_str().unwrap(),
    ];
    let run = diffuse(&args);
    assert!(run.status.success(), "{}", stderr(&run));
    let ours = &read_safetensors(&out).unwrap()["samples"];
    let reference = &io["ddim_samples"];
    assert_eq!(ours.shape, reference.shape);
    let as_f64 = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
    let err = diffuse_core::tensor_ops::relative_max_error(
        &as_f64(&ours.values),
        &as_f64(&reference.values),
    );
    assert!(err <= 1e-3, "relative error {err:.3e}");
    assert!(std::fs::metadata(&grid).unwrap().len() > 0);

    assert_clean_error(
        &[
            "sample",
            "--pipeline",
            pipeline.to_str().unwrap(),
            "--n",
            "2",
            "--out-tensor",
            out.to_str().unwrap(),
        ],
        "class labels are required",
    );
    assert_clean_error(
        &[
            "sample",
            "--pipeline",
            "no/such/dir",
            "--n",
            "2",
            "--out-tensor",
            out.to_str().unwrap(),
        ],
        "no/such/dir",
    );

    // --gmm-only flags are refused with --pipeline rather than ignored.
    let refused = diffuse(&[
        "sample",
        "--pipeline",
        pipeline.to_str().unwrap(),
        "--prediction-type",
        "sample",
        "--out-tensor",
        out.to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("cannot be used with"),
        "{}",
        stderr(&refused)
    );

    // A pipeline whose weights file is cut short.
    let broken = dir.path().join("broken");
    for sub in ["unet", "scheduler"] {
        std::fs::create_dir_all(broken.join(sub)).unwrap();
    }
    for file in [
        "model_index.json",
        "unet/config.json",
        "scheduler/scheduler_config.json",
    ] {
        std::fs::copy(pipeline.join(file), broken.join(file)).unwrap();
    }
    let weights = "unet/diffusion_pytorch_model.safetensors";
    let bytes = std::fs::read(pipeline.join(weights)).unwrap();
    std::fs::write(broken.join(weights), &bytes[..bytes.len() / 3]).unwrap();
    assert_clean_error(
        &[
            "sample",
            "--pipeline",
            broken.to_str().unwrap(),
            "--n",
            "2",
            "--class-labels",
            "1",
            "--out-tensor",
            out.to_str().unwrap(),
        ],
        "not a valid safetensors file",
    );
}

#[test]
fn bench_unet_prints_throughput_json() {
    let config =
        "crates/diffuse-core/tests/fixtures/unet/class_scaleshift_gray/pipeline/unet/config.json";
    let out = diffuse(&[
        "bench",
        "unet",
        "--model-config",
        config,
        "--batch-size",
        "2",
        "--iters",
        "1",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["parameters"].as_u64(), Some(272945));
    assert!(json["images_per_second"].as_f64().unwrap() > 0.0);
    assert_clean_error(
        &["bench", "unet", "--model-config", "missing.json"],
        "missing.json",
    );
}

fn metrics(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn train_resume_and_sample_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let config = dir.path().join("run.toml");
    // The TOML file and the flags are two spellings of the same settings; flags win.
    std::fs::write(
        &config,
        "dataset = \"toy:moons\"\npreset = \"tiny\"\nbatch_size = 32\nsteps = 999\nlog_every = 5\n",
    )
    .unwrap();
    let run_str = run.to_str().unwrap();
    let base = [
        "train",
        "--config",
        config.to_str().unwrap(),
        "--out",
        run_str,
    ];
    let out = diffuse(&[&base[..], &["--steps", "20", "--checkpoint-every", "10"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = metrics(&run);
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[3]["step"], 20);
    assert!(
        lines
            .iter()
            .all(|l| l["loss"].as_f64().unwrap().is_finite())
    );
    assert!(run.join("loss.png").is_file() && run.join("samples.png").is_file());

    // Training on into the same folder needs --resume; --steps is the new total.
    assert_clean_error(&[&base[..], &["--steps", "30"]].concat(), "--resume");
    let out = diffuse(&["train", "--resume", run_str, "--steps", "30"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(metrics(&run).last().unwrap()["step"], 30);
    assert_clean_error(
        &[
            "train",
            "--resume",
            run_str,
            "--steps",
            "40",
            "--learning-rate",
            "0.1",
        ],
        "learning_rate",
    );

    let samples = dir.path().join("samples.safetensors");
    let out = diffuse(&[
        "sample",
        "--pipeline",
        run_str,
        "--sampler",
        "ddim",
        "--steps",
        "10",
        "--n",
        "16",
        "--out-tensor",
        samples.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        read_safetensors(&samples).unwrap()["samples"].shape,
        vec![16, 2, 1, 1]
    );
}

#[test]
fn train_refuses_bad_input_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out = out.to_str().unwrap();
    assert_clean_error(
        &[
            "train",
            "--dataset",
            "mnist",
            "--data",
            "/nonexistent/mnist",
            "--out",
            out,
        ],
        "/nonexistent/mnist",
    );
    assert_clean_error(
        &["train", "--dataset", "toy:spiral", "--out", out],
        "spiral",
    );
    assert_clean_error(
        &[
            "train",
            "--dataset",
            "toy:moons",
            "--preset",
            "huge",
            "--out",
            out,
        ],
        "huge",
    );
    assert_clean_error(
        &[
            "train",
            "--dataset",
            "toy:moons",
            "--steps",
            "0",
            "--out",
            out,
        ],
        "steps",
    );
    assert_clean_error(
        &["train", "--config", "/nonexistent.toml", "--out", out],
        "nonexistent.toml",
    );
    assert_clean_error(
        &["train", "--resume", "/nonexistent/run"],
        "/nonexistent/run",
    );
    let bad_toml = dir.path().join("bad.toml");
    std::fs::write(&bad_toml, "dataset = \"toy:moons\"\nlerning_rate = 1\n").unwrap();
    assert_clean_error(
        &[
            "train",
            "--config",
            bad_toml.to_str().unwrap(),
            "--out",
            out,
        ],
        "lerning_rate",
    );
    for (flag, value) in [("--learning-rate", "NaN"), ("--ema-max-decay", "inf")] {
        let args = ["train", "--dataset", "toy:moons", flag, value, "--out", out];
        let run = diffuse(&args);
        let err = stderr(&run);
        assert!(!run.status.success(), "{args:?} succeeded");
        assert!(
            err.contains(flag) && err.contains("finite number"),
            "{args:?}: {err}"
        );
    }
    assert_clean_error(
        &[
            "train",
            "--dataset",
            "toy:moons",
            "--preset",
            "mlp",
            "--ema-max-decay",
            "1.5",
            "--out",
            out,
        ],
        "ema_max_decay",
    );
    assert!(!Path::new(out).exists());
}

/// A copy of the tiny trained U-Net pipeline fixture in `dir`, for breaking one file of it.
fn copy_tiny_pipeline(dir: &Path) {
    let fixture = Path::new("crates/diffuse-core/tests/fixtures/trained/unet-tiny-mnist");
    for file in [
        "model_index.json",
        "scheduler/scheduler_config.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
    ] {
        let to = dir.join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(fixture.join(file), &to).unwrap();
    }
}

/// Rewrites the JSON file `path` with `edit`.
fn edit_json(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut value: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(path, value.to_string()).unwrap();
}

/// `diffuse sample` on the pipeline folder `dir` must fail cleanly, naming `needle`.
fn assert_sample_refuses(dir: &Path, needle: &str) {
    let grid = dir.join("grid.png");
    assert_clean_error(
        &[
            "sample",
            "--pipeline",
            dir.to_str().unwrap(),
            "--out",
            grid.to_str().unwrap(),
            "--sampler",
            "ddim",
            "--steps",
            "2",
        ],
        needle,
    );
}

#[test]
fn sample_refuses_a_pipeline_whose_config_asks_for_the_impossible() {
    let dir = tempfile::tempdir().unwrap();
    copy_tiny_pipeline(dir.path());
    edit_json(&dir.path().join("unet/config.json"), |config| {
        config["sample_size"] = Value::from(1_000_000_000)
    });
    assert_sample_refuses(dir.path(), "sample_size");
}

#[test]
fn sample_refuses_a_model_index_that_does_not_name_the_network() {
    let dir = tempfile::tempdir().unwrap();
    copy_tiny_pipeline(dir.path());
    let index = dir.path().join("model_index.json");
    let original = std::fs::read_to_string(&index).unwrap();
    edit_json(&index, |index| {
        index.as_object_mut().unwrap().remove("unet");
    });
    assert_sample_refuses(dir.path(), "names no `unet` component");
    std::fs::write(&index, &original).unwrap();
    edit_json(&index, |index| {
        index["unet"] = serde_json::json!(["diffusers", "UNet2DConditionModel"])
    });
    assert_sample_refuses(dir.path(), "UNet2DConditionModel");
}

#[test]
fn bench_train_prints_throughput_json() {
    let out = diffuse(&[
        "bench",
        "train",
        "--preset",
        "tiny",
        "--batch-size",
        "4",
        "--steps",
        "1",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json["images_per_second"].as_f64().unwrap() > 0.0);
    assert!(json["peak_rss_bytes"].as_u64().unwrap() > 0);
    assert_eq!(json["batch_size"], 4);
}

#[test]
fn train_classifier_writes_a_classifier_and_its_accuracies() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("classifier");
    let args = [
        "train-classifier",
        "--dataset",
        "mnist",
        "--steps",
        "5",
        "--batch-size",
        "16",
        "--channels",
        "8,16",
        "--eval-samples",
        "64",
        "--out",
        out.to_str().unwrap(),
    ];
    let run = diffuse(&args);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(String::from_utf8_lossy(&run.stdout).contains("t =    0 (clean)"));
    let summary: Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["step"], 5);
    assert_eq!(summary["eval_samples"], 64);
    let accuracy = summary["accuracy"].as_array().unwrap();
    let timesteps: Vec<u64> = accuracy
        .iter()
        .map(|a| a["timestep"].as_u64().unwrap())
        .collect();
    assert_eq!(timesteps, [0, 250, 500, 750]);
    assert!(accuracy.iter().all(|a| {
        let p = a["accuracy"].as_f64().unwrap();
        (0.0..=1.0).contains(&p)
    }));
    assert!(out.join("config.json").is_file() && out.join("model.safetensors").is_file());

    assert_clean_error(&args, "already holds a classifier");
    assert_clean_error(
        &[
            "train-classifier",
            "--dataset",
            "toy:moons",
            "--out",
            dir.path().join("other").to_str().unwrap(),
        ],
        "vector data",
    );
}

/// An image folder of two classes a classifier tells apart by brightness: `dark/` holds 8×8 gray
/// images with pixels in [0, 0.3], `bright/` with pixels in [0.7, 1].
fn brightness_classes(root: &Path) {
    for (class, base) in [("dark", 0u8), ("bright", 178)] {
        let folder = root.join(class);
        std::fs::create_dir_all(&folder).unwrap();
        for i in 0..24u32 {
            let image = image::GrayImage::from_fn(8, 8, |x, y| {
                image::Luma([base + ((x * 7 + y * 13 + i * 5) % 77) as u8])
            });
            image.save(folder.join(format!("{i}.png"))).unwrap();
        }
    }
}

fn mean(path: &Path) -> f64 {
    let values = &read_safetensors(path).unwrap()["samples"].values;
    values.iter().map(|&v| v as f64).sum::<f64>() / values.len() as f64
}

#[test]
fn classifier_guidance_steers_samples_towards_the_class() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    brightness_classes(&data);
    let classifier = dir.path().join("classifier");
    let train = diffuse(&[
        "train-classifier",
        "--dataset",
        data.to_str().unwrap(),
        "--resolution",
        "8",
        "--color",
        "gray",
        "--steps",
        "60",
        "--batch-size",
        "16",
        "--channels",
        "8,16",
        "--eval-samples",
        "16",
        "--out",
        classifier.to_str().unwrap(),
    ]);
    assert!(train.status.success(), "{}", stderr(&train));

    // The 8×8 gray class-conditional fixture pipeline has the classifier's (default) schedule.
    let pipeline = "crates/diffuse-core/tests/fixtures/unet/class_scaleshift_gray/pipeline";
    let sample = |name: &str, class: &str, guidance: &[&str]| {
        let out = dir.path().join(format!("{name}.safetensors"));
        let args = [
            &[
                "sample",
                "--pipeline",
                pipeline,
                "--scheduler",
                "ddim",
                "--steps",
                "10",
                "--n",
                "8",
                "--class-labels",
                class,
                "--out-tensor",
                out.to_str().unwrap(),
            ][..],
            guidance,
        ]
        .concat();
        let run = diffuse(&args);
        assert!(run.status.success(), "{}", stderr(&run));
        out
    };
    let with = |scale: &'static str| {
        [
            "--classifier",
            classifier.to_str().unwrap(),
            "--classifier-scale",
            scale,
        ]
    };
    let unguided = sample("unguided", "0", &[]);
    let scale_zero = sample("zero", "0", &with("0"));
    assert_eq!(
        read_safetensors(&unguided).unwrap()["samples"].values,
        read_safetensors(&scale_zero).unwrap()["samples"].values,
        "scale 0 is the unguided sampler"
    );
    // Labels sorted by folder name: 0 = bright, 1 = dark. Same noise, opposite pulls.
    let bright = mean(&sample("bright", "0", &with("3")));
    let dark = mean(&sample("dark", "1", &with("3")));
    let plain = mean(&unguided);
    assert!(
        bright > plain + 0.1 && dark < plain - 0.1,
        "bright {bright}, unguided {plain}, dark {dark}"
    );

    // A classifier of another image size or forward process cannot guide this model.
    let other = |name: &str, extra: &[&str]| {
        let path = dir.path().join(name);
        let args = [
            &[
                "train-classifier",
                "--dataset",
                data.to_str().unwrap(),
                "--color",
                "gray",
                "--steps",
                "1",
                "--channels",
                "8",
                "--eval-samples",
                "4",
                "--out",
                path.to_str().unwrap(),
            ][..],
            extra,
        ]
        .concat();
        let run = diffuse(&args);
        assert!(run.status.success(), "{}", stderr(&run));
        path
    };
    let guide_with = |classifier: &Path, needle: &str| {
        assert_clean_error(
            &[
                "sample",
                "--pipeline",
                pipeline,
                "--n",
                "2",
                "--class-labels",
                "0",
                "--classifier",
                classifier.to_str().unwrap(),
                "--out-tensor",
                dir.path().join("x.safetensors").to_str().unwrap(),
            ],
            needle,
        )
    };
    guide_with(
        &other("16px", &["--resolution", "16"]),
        "[1, 16, 16] images",
    );
    guide_with(
        &other(
            "cosine",
            &["--resolution", "8", "--beta-schedule", "cosine"],
        ),
        "another forward process",
    );
}

/// A 20-step tiny MLP pipeline on toy:8gaussians at `run`.
fn train_tiny_toy_pipeline(run: &Path) {
    let out = diffuse(&[
        "train",
        "--dataset",
        "toy:8gaussians",
        "--preset",
        "tiny",
        "--steps",
        "20",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn eval_json(args: &[&str]) -> Value {
    let out = diffuse(&[&["eval", "--json"][..], args].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("eval prints one JSON object")
}

#[test]
fn eval_scores_real_images_as_data_and_refuses_bad_input() {
    use diffuse_core::data::Split;
    use diffuse_core::data::idx::{self, IdxDataset};
    use diffuse_core::io::{HostTensor, write_safetensors};

    let dir = tempfile::tempdir().unwrap();
    let test = idx::load(
        IdxDataset::Mnist,
        Path::new("../shared/data/mnist"),
        Split::Test,
    )
    .unwrap();
    let n = 300;
    let images = HostTensor {
        shape: vec![n, 1, 28, 28],
        values: test.values[..n * 784].to_vec(),
    };
    let file = dir.path().join("real.safetensors");
    write_safetensors(&file, &[("samples", &images)]).unwrap();
    let labels: Vec<String> = test.labels.as_ref().unwrap()[..n]
        .iter()
        .map(usize::to_string)
        .collect();
    let file_str = file.to_str().unwrap();
    let report = eval_json(&[
        "--samples",
        file_str,
        "--dataset",
        "mnist",
        "--class-labels",
        &labels.join(","),
    ]);
    // Test images against the test split: the built-in classifier knows them.
    assert!(
        report["class_accuracy"].as_f64().unwrap() > 0.97,
        "{report}"
    );
    assert!(report["precision"].as_f64().unwrap() > 0.95, "{report}");
    assert!(report["fd"].as_f64().unwrap() < 1.0, "{report}");
    assert_eq!(report["reference_samples"], 10000);

    assert_clean_error(
        &[
            "eval",
            "--samples",
            file_str,
            "--dataset",
            "fashion-mnist",
            "--feature-classifier",
            "crates/diffuse-core/assets/classifiers/mnist",
        ],
        "trained on `mnist`",
    );
    // Inception weights that are not there, or not a safetensors file: one line naming the file.
    let not_weights = dir.path().join("inception.safetensors");
    std::fs::write(&not_weights, "not weights").unwrap();
    for (weights, needle) in [
        ("absent.safetensors", "absent.safetensors"),
        (
            not_weights.to_str().unwrap(),
            "not a valid safetensors file",
        ),
    ] {
        assert_clean_error(
            &[
                "eval",
                "--samples",
                file_str,
                "--dataset",
                "mnist",
                "--inception",
                weights,
            ],
            needle,
        );
    }
    let empty = dir.path().join("empty.safetensors");
    let none = HostTensor {
        shape: vec![0, 1, 28, 28],
        values: vec![],
    };
    write_safetensors(&empty, &[("samples", &none)]).unwrap();
    assert_clean_error(
        &[
            "eval",
            "--samples",
            empty.to_str().unwrap(),
            "--dataset",
            "mnist",
        ],
        "empty",
    );
    // The 8×8 fixture pipeline's samples are not MNIST-sized.
    assert_clean_error(
        &[
            "eval",
            "--pipeline",
            "crates/diffuse-core/tests/fixtures/unet/class_scaleshift_gray/pipeline",
            "--dataset",
            "mnist",
            "--n",
            "4",
            "--steps",
            "2",
        ],
        "[1, 8, 8] images",
    );
}

#[test]
fn eval_of_a_vector_pipeline_reports_sliced_wasserstein_and_likelihood() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    train_tiny_toy_pipeline(&run);
    let args = [
        "--pipeline",
        run.to_str().unwrap(),
        "--dataset",
        "toy:8gaussians",
        "--n",
        "200",
        "--steps",
        "10",
    ];
    let report = eval_json(&args);
    let sw = report["sliced_wasserstein"].as_f64().unwrap();
    let (ll, reference_ll) = (
        report["log_likelihood"].as_f64().unwrap(),
        report["reference_log_likelihood"].as_f64().unwrap(),
    );
    // 20 steps of training do not place samples on the eight modes: the data's own likelihood
    // is higher than the samples'.
    assert!(sw > 0.0 && sw.is_finite() && reference_ll > ll, "{report}");
    assert_eq!(report["samples"], 200);
    assert_eq!(
        eval_json(&args),
        report,
        "eval is deterministic given the seed"
    );
}

#[test]
fn nll_prints_bits_per_dim_of_test_images() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    brightness_classes(&data);
    let pipeline = "crates/diffuse-core/tests/fixtures/unet/class_scaleshift_gray/pipeline";
    let args = [
        "nll",
        "--pipeline",
        pipeline,
        "--dataset",
        data.to_str().unwrap(),
        "--resolution",
        "8",
        "--color",
        "gray",
        "--n",
        "6",
        "--terms",
        "20",
        "--json",
    ];
    let out = diffuse(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let bpd = report["bits_per_dim"].as_f64().unwrap();
    let parts = [
        "prior_bits_per_dim",
        "decoder_bits_per_dim",
        "diffusion_bits_per_dim",
    ]
    .map(|k| report[k].as_f64().unwrap());
    assert!(
        bpd > 0.0 && (bpd - parts.iter().sum::<f64>()).abs() < 1e-9,
        "{report}"
    );
    assert_eq!(report["terms_evaluated"], 21);
    assert_eq!(report["conditional"], true);
    assert_clean_error(
        &[
            "nll",
            "--pipeline",
            pipeline,
            "--dataset",
            "mnist",
            "--n",
            "2",
        ],
        "[1, 28, 28] images",
    );
}

#[test]
fn nll_by_the_probability_flow_ode_scores_images_and_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    brightness_classes(&data);
    let pipeline = "crates/diffuse-core/tests/fixtures/unet/class_scaleshift_gray/pipeline";
    let data = data.to_str().unwrap();
    let images = [
        "nll",
        "--pipeline",
        pipeline,
        "--dataset",
        data,
        "--resolution",
        "8",
        "--color",
        "gray",
        "--method",
        "ode",
        "--n",
        "3",
        "--batch-size",
        "2",
        "--rtol",
        "1e-3",
        "--atol",
        "1e-3",
        "--json",
    ];
    let out = diffuse(&images);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let bpd = report["bits_per_dim"].as_f64().unwrap();
    assert!(bpd.is_finite() && bpd > 0.0, "{report}");
    assert!(report["bits_per_dim_std_error"].as_f64().unwrap() > 0.0);
    assert_eq!(report["method"], "ode");
    assert_eq!(report["conditional"], true);
    assert_eq!(report["dequantized"], true);
    assert_eq!(
        (report["samples"].clone(), report["batches"].clone()),
        (3.into(), 2.into())
    );
    assert!(report["nfe"].as_f64().unwrap() >= 8.0, "{report}");
    for (flag, value, needle) in [
        ("--probe", "exakt", "trace estimator"),
        ("--rtol", "0", "rtol"),
        ("--eps", "1.5", "ε"),
        ("--sde", "vpp", "vpp"),
    ] {
        let mut args = images.to_vec();
        match args.iter().position(|a| *a == flag) {
            Some(i) => args[i + 1] = value,
            None => args.extend([flag, value]),
        }
        assert_clean_error(&args, needle);
    }
    let mut full = images.to_vec();
    full.push("--full");
    assert_clean_error(&full, "--method vlb");

    let run = dir.path().join("run");
    train_tiny_toy_pipeline(&run);
    let vectors = [
        "nll",
        "--pipeline",
        run.to_str().unwrap(),
        "--dataset",
        "toy:8gaussians",
        "--method",
        "ode",
        "--probe",
        "exact",
        "--n",
        "8",
        "--rtol",
        "1e-3",
        "--atol",
        "1e-3",
        "--json",
    ];
    let out = diffuse(&vectors);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["bits_per_dim"].as_f64().unwrap().is_finite(),
        "{report}"
    );
    assert_eq!(report["dequantized"], false);
    assert_eq!(report["trace"], "exact");
    let mut vlb = vectors.to_vec();
    vlb[6] = "vlb";
    assert_clean_error(&vlb[..7], "vector data");
}

#[test]
fn sde_samplers_run_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.safetensors");
    let out = out.to_str().unwrap();
    for (sde, sampler) in [("vp", "pc"), ("subvp", "pc"), ("ve", "pc"), ("vp", "ode")] {
        let run = diffuse(&[
            "sample",
            "--gmm",
            MIXTURE,
            "--sde",
            sde,
            "--sde-sampler",
            sampler,
            "--steps",
            "30",
            "--n",
            "8",
            "--out-tensor",
            out,
        ]);
        assert!(run.status.success(), "{sde} {sampler}: {}", stderr(&run));
        let values = &read_safetensors(Path::new(out)).unwrap()["samples"].values;
        assert!(values.len() == 16 && values.iter().all(|v| v.is_finite()));
    }
    let base = ["sample", "--gmm", MIXTURE, "--n", "2", "--out-tensor", out];
    assert_clean_error(&[&base[..], &["--sde", "vq"]].concat(), "unknown SDE");
    assert_clean_error(
        &[&base[..], &["--sde", "vp", "--sde-sampler", "rk4"]].concat(),
        "--sde-sampler must be pc or ode",
    );
    let conflict = diffuse(&[&base[..], &["--sde", "vp", "--parallel"]].concat());
    assert!(!conflict.status.success() && stderr(&conflict).contains("cannot be used with"));
}

#[test]
fn bench_quality_fills_the_sampler_by_nfe_table() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let train = diffuse(&[
        "train",
        "--dataset",
        "fashion-mnist",
        "--preset",
        "tiny",
        "--steps",
        "2",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(train.status.success(), "{}", stderr(&train));
    let out = dir.path().join("quality");
    let bench = diffuse(&[
        "bench",
        "quality",
        "--pipeline",
        run.to_str().unwrap(),
        "--samplers",
        "ddim,heun",
        "--nfe",
        "3",
        "--n",
        "12",
        "--reference-n",
        "200",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(bench.status.success(), "{}", stderr(&bench));
    let cells: Vec<Value> =
        serde_json::from_slice(&std::fs::read(out.join("quality.json")).unwrap()).unwrap();
    let steps: Vec<(String, u64)> = cells
        .iter()
        .map(|c| {
            (
                c["sampler"].as_str().unwrap().to_string(),
                c["steps"].as_u64().unwrap(),
            )
        })
        .collect();
    // Heun spends two evaluations per step: 3 NFE is 2 steps.
    assert_eq!(steps, [("ddim".to_string(), 3), ("heun".to_string(), 2)]);
    assert!(cells.iter().all(|c| c["fd"].as_f64().unwrap().is_finite()));
    let table = std::fs::read_to_string(out.join("quality.md")).unwrap();
    assert!(
        table.starts_with("| sampler | NFE 3 |") && table.contains("| heun |"),
        "{table}"
    );
}

#[test]
fn a_second_run_on_the_same_out_is_refused_and_a_killed_run_leaves_no_stale_lock() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out = out.to_str().unwrap();
    let args = |steps: &str| {
        [
            "train",
            "--dataset",
            "toy:moons",
            "--preset",
            "mlp",
            "--steps",
            steps,
            "--log-every",
            "1",
            "--checkpoint-every",
            "1000000",
            "--out",
            out,
        ]
        .map(String::from)
    };
    let mut first = Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .args(args("1000000"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The run holds its folder once it logs its first step.
    let metrics = Path::new(out).join("metrics.jsonl");
    let started = std::time::Instant::now();
    while std::fs::metadata(&metrics).map_or(true, |m| m.len() == 0) {
        assert!(
            started.elapsed().as_secs() < 120,
            "the first run never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let second: Vec<String> = args("2").to_vec();
    let second: Vec<&str> = second.iter().map(String::as_str).collect();
    assert_clean_error(&second, "in use by another training run");
    first.kill().unwrap(); // SIGKILL: no chance to clean up
    first.wait().unwrap();
    let third = diffuse(&second);
    assert!(third.status.success(), "{}", stderr(&third));
}

#[test]
fn sigint_saves_a_checkpoint_that_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out = out.to_str().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .args([
            "train",
            "--dataset",
            "toy:moons",
            "--preset",
            "mlp",
            "--steps",
            "1000000",
            "--log-every",
            "1",
            "--out",
            out,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let metrics = Path::new(out).join("metrics.jsonl");
    let started = std::time::Instant::now();
    while std::fs::metadata(&metrics).map_or(true, |m| m.len() == 0) {
        assert!(started.elapsed().as_secs() < 120, "the run never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let pid = run.id().to_string();
    let kill = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(kill.success());
    let output = run.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout.contains("interrupted (resume with --resume)"),
        "{stdout}"
    );
    let latest = std::fs::read_to_string(Path::new(out).join("checkpoints/LATEST")).unwrap();
    let step: usize = latest.trim().trim_start_matches("step-").parse().unwrap();
    let two_more = (step + 2).to_string();
    let resumed = diffuse(&["train", "--resume", out, "--steps", &two_more]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let logged = metrics_steps(Path::new(out));
    assert_eq!(logged.last(), Some(&(step + 2)), "{logged:?}");
}

/// The steps of a run's metrics.jsonl lines.
fn metrics_steps(dir: &Path) -> Vec<usize> {
    metrics(dir)
        .iter()
        .map(|line| line["step"].as_u64().unwrap() as usize)
        .collect()
}

/// The training command of the kill -9 test, on `out`: small enough to run in seconds, with a
/// checkpoint every other step so that kills land in checkpoint writes too.
fn crash_test_run(out: &str) -> Vec<String> {
    [
        "train",
        "--dataset",
        "toy:moons",
        "--preset",
        "mlp",
        "--steps",
        "200",
        "--log-every",
        "1",
        "--checkpoint-every",
        "2",
        "--out",
        out,
    ]
    .map(String::from)
    .to_vec()
}

/// Every logged number but the throughput.
fn logged_numbers(dir: &Path) -> Vec<Value> {
    metrics(dir)
        .into_iter()
        .map(|mut line| {
            line.as_object_mut().unwrap().remove("images_per_second");
            line
        })
        .collect()
}

#[test]
fn twenty_kill_9s_and_resumes_end_bit_for_bit_where_one_run_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, killed) = (dir.path().join("whole"), dir.path().join("killed"));
    let (whole, killed) = (whole.to_str().unwrap(), killed.to_str().unwrap());
    let args = crash_test_run(whole);
    let done = diffuse(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(done.status.success(), "{}", stderr(&done));
    // Kill at pseudo-random moments (a fixed LCG, so a failure reproduces), resuming each time.
    let mut lcg: u64 = 0x2545_f491_4f6c_dd1d;
    let mut kills = 0;
    while kills < 20 {
        let latest = Path::new(killed).join("checkpoints/LATEST");
        let args = if latest.exists() {
            vec!["train".into(), "--resume".into(), killed.to_string()]
        } else {
            crash_test_run(killed)
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_diffuse"))
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        lcg = lcg
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(std::time::Duration::from_millis(20 + (lcg >> 33) % 300));
        if child.try_wait().unwrap().is_some() {
            break; // it finished before this kill
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        let at = std::fs::read_to_string(&latest).unwrap_or_default();
        eprintln!("kill {kills}: latest checkpoint {}", at.trim());
    }
    let finish = diffuse(&["train", "--resume", killed]);
    assert!(finish.status.success(), "{}", stderr(&finish));
    assert!(
        kills >= 10,
        "only {kills} kills landed before the run ended"
    );
    assert_eq!(
        logged_numbers(Path::new(killed)),
        logged_numbers(Path::new(whole))
    );
    let last = "checkpoints/step-00000200";
    for file in [
        "model.safetensors",
        "ema.safetensors",
        "optimizer.safetensors",
    ] {
        let (a, b) = (
            Path::new(whole).join(last).join(file),
            Path::new(killed).join(last).join(file),
        );
        assert!(
            std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
            "{file} differs"
        );
    }
}

fn max_relative_error(got: &[f32], want: &[f32]) -> f64 {
    let scale = want.iter().fold(0.0f64, |m, v| m.max(f64::from(v.abs())));
    let diff = got
        .iter()
        .zip(want)
        .fold(0.0f64, |m, (a, b)| m.max(f64::from((a - b).abs())));
    diff / scale
}

#[test]
fn vae_encodes_and_decodes_as_diffusers_does() {
    let case = Path::new("crates/diffuse-core/tests/fixtures/autoencoder/rgb_quant_attn");
    let (vae, io) = (case.join("vae"), case.join("io.safetensors"));
    let dir = tempfile::tempdir().unwrap();
    let latents = dir.path().join("latents.safetensors");
    let (images, pngs) = (
        dir.path().join("images.safetensors"),
        dir.path().join("pngs"),
    );
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let encode = diffuse(&[
        "vae",
        "encode",
        "--vae",
        &path(&vae),
        "--input",
        &path(&io),
        "--out-tensor",
        &path(&latents),
    ]);
    assert!(encode.status.success(), "{}", stderr(&encode));
    let decode = diffuse(&[
        "vae",
        "decode",
        "--vae",
        &path(&vae),
        "--input",
        &path(&latents),
        "--out-tensor",
        &path(&images),
        "--out",
        &path(&pngs),
        "--batch-size",
        "1",
    ]);
    assert!(decode.status.success(), "{}", stderr(&decode));
    let want = read_safetensors(&io).unwrap();
    let got_latents = &read_safetensors(&latents).unwrap()["latents"];
    assert_eq!(got_latents.shape, want["mode"].shape);
    assert!(max_relative_error(&got_latents.values, &want["mode"].values) < 1e-4);
    let got_images = &read_safetensors(&images).unwrap()["images"];
    assert!(max_relative_error(&got_images.values, &want["reconstruction"].values) < 1e-4);
    assert_eq!(std::fs::read_dir(&pngs).unwrap().count(), 2);

    // Bad input: latents for another autoencoder, images the encoder cannot halve, a damaged
    // folder, a file without the tensor.
    let gray = "crates/diffuse-core/tests/fixtures/autoencoder/gray_plain/vae";
    let out = path(&dir.path().join("x.safetensors"));
    assert_clean_error(
        &[
            "vae",
            "decode",
            "--vae",
            gray,
            "--input",
            &path(&latents),
            "--out-tensor",
            &out,
        ],
        "the latents have 4 channels, the autoencoder's have 2",
    );
    let odd = dir.path().join("odd.safetensors");
    let odd_images = diffuse_core::io::HostTensor {
        shape: vec![1, 3, 15, 15],
        values: vec![0.0; 675],
    };
    diffuse_core::io::write_safetensors(&odd, &[("images", &odd_images)]).unwrap();
    assert_clean_error(
        &[
            "vae",
            "encode",
            "--vae",
            &path(&vae),
            "--input",
            &path(&odd),
            "--out-tensor",
            &out,
        ],
        "15×15 is not divisible by 2",
    );
    let damaged = dir.path().join("damaged");
    std::fs::create_dir(&damaged).unwrap();
    std::fs::copy(vae.join("config.json"), damaged.join("config.json")).unwrap();
    let weights = std::fs::read(vae.join("diffusion_pytorch_model.safetensors")).unwrap();
    std::fs::write(
        damaged.join("diffusion_pytorch_model.safetensors"),
        &weights[..weights.len() / 2],
    )
    .unwrap();
    assert_clean_error(
        &[
            "vae",
            "encode",
            "--vae",
            &path(&damaged),
            "--input",
            &path(&io),
            "--out-tensor",
            &out,
        ],
        "diffusion_pytorch_model.safetensors",
    );
    assert_clean_error(
        &[
            "vae",
            "encode",
            "--vae",
            &path(&vae),
            "--input",
            &path(&latents),
            "--out-tensor",
            &out,
        ],
        "has no tensor `images`",
    );
}

#[test]
fn sample_draws_a_latent_dit_pipeline_as_diffusers_does() {
    let fixture = Path::new("crates/diffuse-core/tests/fixtures/latent_dit");
    let io = read_safetensors(&fixture.join("io.safetensors")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (noise, out) = (
        dir.path().join("noise.safetensors"),
        dir.path().join("out.safetensors"),
    );
    diffuse_core::io::write_safetensors(&noise, &[("noise", &io["init_noise"])]).unwrap();
    let pipeline = fixture.join("pipeline");
    let args = |noise: &Path| {
        vec![
            "sample".to_string(),
            "--pipeline".into(),
            pipeline.to_str().unwrap().into(),
            "--class-labels".into(),
            "1,3".into(),
            "--n".into(),
            "2".into(),
            "--guidance-scale".into(),
            "4".into(),
            "--steps".into(),
            "10".into(),
            "--init-noise".into(),
            noise.to_str().unwrap().into(),
            "--out-tensor".into(),
            out.to_str().unwrap().into(),
        ]
    };
    let run = diffuse(&args(&noise).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(run.status.success(), "{}", stderr(&run));
    let samples = &read_safetensors(&out).unwrap()["samples"];
    assert_eq!(samples.shape, vec![2, 3, 16, 16], "decoded images");
    assert!(max_relative_error(&samples.values, &io["samples_g4"].values) < 1e-3);
    // Noise of the image's shape instead of the latent's.
    let image_noise = dir.path().join("image_noise.safetensors");
    let wrong = diffuse_core::io::HostTensor {
        shape: vec![2, 3, 16, 16],
        values: vec![0.0; 1536],
    };
    diffuse_core::io::write_safetensors(&image_noise, &[("noise", &wrong)]).unwrap();
    let args = args(&image_noise);
    assert_clean_error(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        "[2, 4, 8, 8]",
    );
}

/// 16×16 RGB images in two class folders: reddish and bluish noise.
fn write_rgb_image_folder(dir: &Path, per_class: u32) {
    for (class, channel) in [("red", 0usize), ("blue", 2)] {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        for i in 0..per_class {
            let img = image::RgbImage::from_fn(16, 16, |x, y| {
                let mut pixel = [((x * 7 + y * 3 + i * 5) % 50) as u8; 3];
                pixel[channel] = 200;
                image::Rgb(pixel)
            });
            img.save(dir.join(class).join(format!("{i}.png"))).unwrap();
        }
    }
}

#[test]
fn train_with_an_autoencoder_runs_latent_diffusion_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let (images, run) = (dir.path().join("images"), dir.path().join("run"));
    write_rgb_image_folder(&images, 6);
    // A vae/ folder whose config has no scaling_factor: the run computes 1/std of the latents.
    let vae = "crates/diffuse-core/tests/fixtures/autoencoder/legacy_f16/vae";
    let train = |extra: &[&str]| {
        let base = [
            "train",
            "--dataset",
            images.to_str().unwrap(),
            "--resolution",
            "16",
            "--color",
            "rgb",
            "--autoencoder",
            vae,
            "--preset",
            "tiny",
            "--class-conditional",
            "--batch-size",
            "4",
            "--out",
            run.to_str().unwrap(),
        ];
        diffuse(&[&base[..], extra].concat())
    };
    let out = train(&["--steps", "4"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let index = std::fs::read_to_string(run.join("model_index.json")).unwrap();
    assert!(index.contains("AutoencoderKL"), "{index}");
    let vae_config: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("vae/config.json")).unwrap())
            .unwrap();
    let scale = vae_config["scaling_factor"]
        .as_f64()
        .expect("the computed scaling factor is recorded");
    assert!(scale.is_finite() && scale > 0.0);
    let cached = || std::fs::read_dir(run.join("latent-cache")).unwrap().count();
    assert_eq!(cached(), 1);

    // The exported pipeline samples images, not latents; resuming reads the cache again.
    let samples = dir.path().join("samples.safetensors");
    let sample = diffuse(&[
        "sample",
        "--pipeline",
        run.to_str().unwrap(),
        "--class-labels",
        "0,1",
        "--n",
        "2",
        "--steps",
        "3",
        "--out-tensor",
        samples.to_str().unwrap(),
    ]);
    assert!(sample.status.success(), "{}", stderr(&sample));
    assert_eq!(
        read_safetensors(&samples).unwrap()["samples"].shape,
        vec![2, 3, 16, 16]
    );
    let resumed = diffuse(&["train", "--resume", run.to_str().unwrap(), "--steps", "6"]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(cached(), 1);

    // Images the autoencoder does not take are refused before training, naming it.
    let gray = "crates/diffuse-core/tests/fixtures/autoencoder/gray_plain/vae";
    let odd = dir.path().join("odd");
    assert_clean_error(
        &[
            "train",
            "--dataset",
            images.to_str().unwrap(),
            "--resolution",
            "16",
            "--autoencoder",
            gray,
            "--preset",
            "tiny",
            "--steps",
            "1",
            "--out",
            odd.to_str().unwrap(),
        ],
        "the images have 3 channels, the autoencoder takes 1",
    );
}
