//! Durations as Synapse's config writes them, for the homeserver's keys, the
//! `modules:` entries and modules' own configs alike.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// A number of milliseconds, or a number with a unit `ms`, `s`, `m`, `h`,
/// `d`, `w` or `y` (Synapse's `parse_duration`): `500ms`, `30s`, `6w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

/// What a duration key expects, for error messages and the schema.
pub const EXPECTED_DURATION: &str =
    "a duration such as `500ms`, `30s`, `12h` or `6w` (units ms, s, m, h, d, w, y), or a number of milliseconds";

impl ConfigDuration {
    pub fn parse(text: &str) -> Option<ConfigDuration> {
        const MS_PER: [(&str, u64); 7] = [
            ("ms", 1),
            ("s", 1_000),
            ("m", 60_000),
            ("h", 3_600_000),
            ("d", 86_400_000),
            ("w", 7 * 86_400_000),
            ("y", 365 * 86_400_000),
        ];
        let text = text.trim();
        let digits = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(digits);
        let per = match unit {
            "" => 1,
            unit => MS_PER.iter().find(|(u, _)| *u == unit)?.1,
        };
        let ms = number.parse::<u64>().ok()?.checked_mul(per)?;
        Some(ConfigDuration(Duration::from_millis(ms)))
    }

    pub fn as_millis(&self) -> u64 {
        self.0.as_millis() as u64
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ConfigDuration;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(EXPECTED_DURATION)
            }
            fn visit_u64<E: serde::de::Error>(self, ms: u64) -> Result<ConfigDuration, E> {
                Ok(ConfigDuration(Duration::from_millis(ms)))
            }
            fn visit_i64<E: serde::de::Error>(self, ms: i64) -> Result<ConfigDuration, E> {
                u64::try_from(ms)
                    .map(|ms| ConfigDuration(Duration::from_millis(ms)))
                    .map_err(|_| E::custom(format!("`{ms}` is not {EXPECTED_DURATION}")))
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<ConfigDuration, E> {
                ConfigDuration::parse(text)
                    .ok_or_else(|| E::custom(format!("`{text}` is not {EXPECTED_DURATION}")))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl schemars::JsonSchema for ConfigDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ConfigDuration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": EXPECTED_DURATION,
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^\\s*[0-9]+(ms|s|m|h|d|w|y)?\\s*$" }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::ConfigDuration;

    #[test]
    fn durations_read_as_synapse_reads_them() {
        let ms = |t: &str| ConfigDuration::parse(t).map(|d| d.as_millis());
        assert_eq!(ms("6w"), Some(6 * 7 * 86_400_000));
        assert_eq!(ms("1d"), Some(86_400_000));
        assert_eq!(ms("30m"), Some(1_800_000));
        assert_eq!(ms("250ms"), Some(250));
        assert_eq!(ms("1y"), Some(365 * 86_400_000));
        assert_eq!(ms("500"), Some(500));
        assert_eq!(ms(" 5s "), Some(5000));
        assert_eq!(ms("5x"), None);
        assert_eq!(ms("w"), None);
        assert_eq!(ms(""), None);
        assert_eq!(ms("6 weeks"), None);
    }
}
