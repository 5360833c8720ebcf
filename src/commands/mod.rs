pub mod bench;
pub mod demo;
pub mod eval;
pub mod sample;
pub mod sampling;
pub mod schedule;
pub mod train;
pub mod train_classifier;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar for `total` sampler steps (hidden when stderr is not a terminal).
pub fn step_progress(label: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>10} [{bar:40}] {pos}/{len} steps, {per_sec}, eta {eta}",
        )
        .expect("progress template is valid")
        .progress_chars("=> "),
    );
    bar.set_message(label.to_string());
    bar
}

/// An `on_step(done, total)` callback that drives `bar`.
pub fn report_to(bar: &ProgressBar) -> impl FnMut(usize, usize) + '_ {
    move |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    }
}
