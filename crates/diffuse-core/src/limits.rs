//! Size limits on what outside input may ask for. They sit far beyond any model `diffuse` can
//! run on one machine and close enough that a typo in a config (a `sample_size` of 10⁹) is a
//! clear error before anything is allocated: never an integer overflow, an abort on allocation
//! or a panic.

use serde_json::Value;

use crate::error::{DiffuseError, Result};

/// The largest integer a config.json may hold anywhere (widths, sizes, counts): 2²⁰, beyond any
/// width or side length in use (an audio U-Net's 65 536-sample window included).
pub const MAX_CONFIG_INTEGER: u64 = 1 << 20;

/// The most blocks a config may stack per level or in all (`layers_per_block`, `num_layers`).
pub const MAX_LAYERS: usize = 256;

/// The most resolution levels of a U-Net-like config (entries of `block_out_channels`).
pub const MAX_LEVELS: usize = 16;

/// The most values one sample may hold (C × H × W): 2²⁸, a gibibyte of f32.
pub const MAX_SAMPLE_VALUES: usize = 1 << 28;

/// The most parameters a network may have: 2³², 16 GiB of f32 weights before the gradients,
/// optimiser moments and EMA that training adds.
pub const MAX_PARAMETERS: usize = 1 << 32;

/// Refuses a config whose JSON holds an integer above [`MAX_CONFIG_INTEGER`] anywhere (in
/// nested arrays and objects too), naming its field.
pub fn check_config_integers(config: &Value, what: &str) -> Result<()> {
    match oversized_integer(config, "") {
        Some((field, value)) => Err(DiffuseError::config(format!(
            "{what} config field `{field}` = {value} is larger than {MAX_CONFIG_INTEGER}, \
             the most any size in a config may be"
        ))),
        None => Ok(()),
    }
}

/// The first integer above the limit under `value`, with its path (`block_out_channels[1]`).
/// Floats are not sizes (serde refuses one where a size belongs) and are let through.
fn oversized_integer(value: &Value, path: &str) -> Option<(String, Value)> {
    match value {
        Value::Number(n) if n.as_u64().is_some_and(|v| v > MAX_CONFIG_INTEGER) => {
            Some((path.to_string(), value.clone()))
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| oversized_integer(item, &format!("{path}[{i}]"))),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            let path = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            oversized_integer(item, &path)
        }),
        _ => None,
    }
}

/// Refuses the first of `counts` (a field name and its value) above `max`, naming it.
pub fn check_at_most(what: &str, max: usize, counts: &[(&str, usize)]) -> Result<()> {
    match counts.iter().find(|(_, value)| *value > max) {
        Some((field, value)) => Err(DiffuseError::config(format!(
            "{what} config: `{field}` = {value} is more than the {max} supported"
        ))),
        None => Ok(()),
    }
}

/// Refuses a sample shape of `channels` × `size` above [`MAX_SAMPLE_VALUES`] values.
pub fn check_sample_values(what: &str, channels: usize, size: [usize; 2]) -> Result<()> {
    let values = channels
        .checked_mul(size[0])
        .and_then(|v| v.checked_mul(size[1]));
    match values {
        Some(v) if v <= MAX_SAMPLE_VALUES => Ok(()),
        _ => Err(DiffuseError::config(format!(
            "{what} config: samples of {channels} × {} × {} values are more than the \
             {MAX_SAMPLE_VALUES} one sample may hold",
            size[0], size[1]
        ))),
    }
}

/// Refuses a network of more than [`MAX_PARAMETERS`] parameters.
pub fn check_parameter_count(what: &str, parameters: usize) -> Result<()> {
    if parameters <= MAX_PARAMETERS {
        Ok(())
    } else {
        Err(DiffuseError::config(format!(
            "{what} config: {parameters} parameters are more than the {MAX_PARAMETERS} \
             a network may have"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_oversized_integer_is_named_with_its_path() {
        let config: Value = serde_json::from_str(
            r#"{"a": 3, "b": [1, 2, 2000000], "c": {"d": 5000000}, "e": 1e300}"#,
        )
        .unwrap();
        let err = check_config_integers(&config, "Test")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`b[2]` = 2000000"), "{err}");
        let nested: Value = serde_json::from_str(r#"{"c": {"d": 5000000}}"#).unwrap();
        let err = check_config_integers(&nested, "Test")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`c.d` = 5000000"), "{err}");
        let fine: Value = serde_json::from_str(r#"{"a": 1048576, "e": 1e300, "f": -7}"#).unwrap();
        assert!(check_config_integers(&fine, "Test").is_ok());
    }

    #[test]
    fn sample_and_parameter_limits_refuse_without_overflowing() {
        assert!(check_sample_values("T", 3, [1024, 1024]).is_ok());
        assert!(check_sample_values("T", 3, [1 << 20, 1 << 20]).is_err());
        assert!(check_sample_values("T", usize::MAX, [usize::MAX, 2]).is_err());
        assert!(check_parameter_count("T", MAX_PARAMETERS).is_ok());
        assert!(check_parameter_count("T", MAX_PARAMETERS + 1).is_err());
        let err = check_at_most("T", 4, &[("x", 4), ("y", 5)]).unwrap_err();
        assert!(err.to_string().contains("`y` = 5"), "{err}");
    }
}
