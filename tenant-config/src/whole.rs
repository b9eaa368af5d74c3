//! Whole numbers as JSON Schema's `integer` allows them: `7` or `7.0` (what
//! OpenAPI clients and fuzzers send), refusing fractions, negatives and
//! anything else, for `#[serde(deserialize_with = ...)]`.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

/// A whole number into `T`.
pub fn number<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<T, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    let whole = n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < u64::MAX as f64)
            .map(|f| f as u64)
    });
    let whole =
        whole.ok_or_else(|| D::Error::custom(format!("expected a whole number, found {n}")))?;
    T::try_from(whole).map_err(|_| D::Error::custom(format!("{whole} is too large")))
}

/// An optional whole number into `T`.
pub fn optional<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<Option<T>, D::Error> {
    match Option::<serde_json::Number>::deserialize(d)? {
        None => Ok(None),
        Some(n) => number(n).map(Some).map_err(D::Error::custom),
    }
}
