pub mod bench;
pub mod demo;
pub mod eval;
pub mod nll;
pub mod sample;
pub mod sampling;
pub mod schedule;
pub mod train;
pub mod train_classifier;
pub mod vae;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

/// A progress bar counting `unit`s (sampler steps, images; hidden when stderr is not a terminal).
pub fn progress_bar(label: &str, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{msg:>10}} [{{bar:40}}] {{pos}}/{{len}} {unit}, {{per_sec}}, eta {{eta}}"
        ))
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

/// Adds the fields of the JSON object `more` to the object `report`.
pub fn extend(report: &mut Value, more: Value) {
    if let (Value::Object(report), Value::Object(more)) = (report, more) {
        report.extend(more);
    }
}

/// A JSON object as one `name  value` line per field.
pub fn print_table(report: &Value) {
    let Value::Object(fields) = report else {
        return;
    };
    let width = fields.keys().map(String::len).max().unwrap_or(0);
    for (name, value) in fields {
        match value {
            Value::Number(n) if n.is_f64() => {
                println!("{name:<width$}  {:.6}", n.as_f64().unwrap_or(f64::NAN))
            }
            Value::String(s) => println!("{name:<width$}  {s}"),
            other => println!("{name:<width$}  {other}"),
        }
    }
}
