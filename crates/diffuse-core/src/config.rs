//! diffusers' config.json conventions, shared by every component config.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{DiffuseError, Result};
use crate::limits::check_config_integers;

/// The diffusers version whose configs we read and write.
pub const DIFFUSERS_VERSION: &str = "0.42.1";

/// Rejects every non-metadata key that serde collected as unknown, naming it: a field `diffuse`
/// does not implement must never be ignored silently.
pub fn reject_unknown_fields(metadata: &BTreeMap<String, Value>, what: &str) -> Result<()> {
    match metadata.keys().find(|k| !k.starts_with('_')) {
        Some(key) => Err(DiffuseError::config(format!(
            "{what} config field `{key}` is not supported"
        ))),
        None => Ok(()),
    }
}

/// Deserialises config.json text after refusing any integer in it above
/// [`MAX_CONFIG_INTEGER`](crate::limits::MAX_CONFIG_INTEGER); `what` names the config in errors.
pub fn parse_config_json<T: DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    let config_error = |e: serde_json::Error| DiffuseError::config(format!("{what} config: {e}"));
    let value: Value = serde_json::from_str(text).map_err(config_error)?;
    check_config_integers(&value, what)?;
    serde_json::from_str(text).map_err(config_error)
}

/// A model config as diffusers stores it: its fields plus `_`-prefixed metadata.
pub trait DiffusersConfig: Serialize + DeserializeOwned + Clone {
    /// The `_class_name` diffusers writes, e.g. `UNet2DModel`.
    const CLASS_NAME: &'static str;

    /// Unknown keys collected by serde (`_class_name`, `_diffusers_version`, …).
    fn metadata(&self) -> &BTreeMap<String, Value>;

    fn metadata_mut(&mut self) -> &mut BTreeMap<String, Value>;

    /// Rejects values `diffuse` does not implement, naming the field.
    fn validate(&self) -> Result<()>;

    /// Parses config.json text; missing fields, unknown fields, unsupported values and sizes
    /// beyond [`crate::limits`] are errors.
    fn from_json(text: &str) -> Result<Self> {
        let config: Self = parse_config_json(text, Self::CLASS_NAME)?;
        reject_unknown_fields(config.metadata(), Self::CLASS_NAME)?;
        config.validate()?;
        Ok(config)
    }

    /// The config as diffusers writes it, with `_class_name` and `_diffusers_version`.
    fn to_json(&self) -> String {
        let mut config = self.clone();
        let metadata = config.metadata_mut();
        metadata.insert("_class_name".into(), Value::from(Self::CLASS_NAME));
        metadata
            .entry("_diffusers_version".into())
            .or_insert_with(|| Value::from(DIFFUSERS_VERSION));
        serde_json::to_string_pretty(&config).expect("a config always serialises")
    }
}
