//! Text encodings of stored values shared by both backends: JSON documents and the model's
//! enums by name. Pure functions; nothing here touches a database.

use crate::{Result, StoreError};
use serde::de::DeserializeOwned;

/// A value as JSON text (`null` if it cannot be serialized).
pub fn to_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// JSON text decoded, or [`StoreError::Corrupt`] naming `context`.
pub fn from_text<T: DeserializeOwned>(text: &str, context: &'static str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        context,
        message: e.to_string(),
    })
}

/// One of the model's enums parsed from its stored name.
pub fn parse<T: std::str::FromStr<Err = String>>(text: &str, context: &'static str) -> Result<T> {
    text.parse()
        .map_err(|message| StoreError::Corrupt { context, message })
}
