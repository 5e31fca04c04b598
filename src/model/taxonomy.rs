//! The downtime taxonomy: every interval that is not cutting gets exactly one loss category.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

/// One category of lost time. The default taxonomy's categories are constants here; a shop may
/// configure more (they are plain snake_case words).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LossCategory(Cow<'static, str>);

impl LossCategory {
    pub const SETUP: LossCategory = LossCategory::constant("setup");
    pub const PROGRAM_PROVEOUT: LossCategory = LossCategory::constant("program_proveout");
    pub const WAITING_INSPECTION: LossCategory = LossCategory::constant("waiting_inspection");
    pub const QUALITY_HOLD: LossCategory = LossCategory::constant("quality_hold");
    pub const BLOCKED: LossCategory = LossCategory::constant("blocked");
    pub const STARVED: LossCategory = LossCategory::constant("starved");
    pub const NO_OPERATOR: LossCategory = LossCategory::constant("no_operator");
    pub const TOOL_CHANGE: LossCategory = LossCategory::constant("tool_change");
    pub const MAINTENANCE: LossCategory = LossCategory::constant("maintenance");
    pub const MACHINE_FAULT: LossCategory = LossCategory::constant("machine_fault");
    /// A stop shorter than the micro-stop threshold: a performance loss, not availability.
    pub const MICRO_STOP: LossCategory = LossCategory::constant("micro_stop");
    pub const PLANNED_DOWNTIME: LossCategory = LossCategory::constant("planned_downtime");
    pub const UNEXPLAINED: LossCategory = LossCategory::constant("unexplained");

    /// The default taxonomy, in the order reports list it.
    pub const DEFAULTS: [LossCategory; 13] = [
        Self::SETUP,
        Self::PROGRAM_PROVEOUT,
        Self::WAITING_INSPECTION,
        Self::QUALITY_HOLD,
        Self::BLOCKED,
        Self::STARVED,
        Self::NO_OPERATOR,
        Self::TOOL_CHANGE,
        Self::MAINTENANCE,
        Self::MACHINE_FAULT,
        Self::MICRO_STOP,
        Self::PLANNED_DOWNTIME,
        Self::UNEXPLAINED,
    ];

    const fn constant(s: &'static str) -> Self {
        Self(Cow::Borrowed(s))
    }

    /// A category named by configuration: lower-case letters, digits and `_`.
    pub fn custom(s: &str) -> Result<Self, String> {
        if s.is_empty()
            || !s
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(format!(
                "a loss category is a snake_case word (a-z, 0-9, _), found {s:?}"
            ));
        }
        if s == "production" {
            return Err("\"production\" is cutting time, not a loss category".into());
        }
        Ok(Self::DEFAULTS
            .iter()
            .find(|c| c.as_str() == s)
            .cloned()
            .unwrap_or_else(|| Self(Cow::Owned(s.to_string()))))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LossCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for LossCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LossCategory({})", self.0)
    }
}

/// Where a span of a machine's time went: cutting parts, or one loss category.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum TimeCategory {
    Production,
    Loss(LossCategory),
}

impl TimeCategory {
    pub fn as_str(&self) -> &str {
        match self {
            TimeCategory::Production => "production",
            TimeCategory::Loss(c) => c.as_str(),
        }
    }
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "production" {
            Ok(TimeCategory::Production)
        } else {
            LossCategory::custom(s).map(TimeCategory::Loss)
        }
    }
}

impl fmt::Display for TimeCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for TimeCategory {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TimeCategory {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <Cow<'de, str>>::deserialize(d)?;
        TimeCategory::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The configured taxonomy: the categories a stop may be classified into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taxonomy {
    categories: Vec<LossCategory>,
}

impl Default for Taxonomy {
    fn default() -> Self {
        Self {
            categories: LossCategory::DEFAULTS.to_vec(),
        }
    }
}

impl Taxonomy {
    /// A taxonomy from configured names; `unexplained` is always present (a stop nobody has
    /// explained yet must have somewhere to go).
    pub fn new(names: &[String]) -> Result<Self, String> {
        let mut categories = Vec::with_capacity(names.len() + 1);
        for n in names {
            let c = LossCategory::custom(n)?;
            if categories.contains(&c) {
                return Err(format!("loss category {n:?} is listed twice"));
            }
            categories.push(c);
        }
        if !categories.contains(&LossCategory::UNEXPLAINED) {
            categories.push(LossCategory::UNEXPLAINED);
        }
        Ok(Self { categories })
    }
    pub fn categories(&self) -> &[LossCategory] {
        &self.categories
    }
    pub fn contains(&self, c: &LossCategory) -> bool {
        self.categories.contains(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_names_resolve_to_the_defaults() {
        assert_eq!(LossCategory::custom("setup").unwrap(), LossCategory::SETUP);
        assert!(LossCategory::custom("Setup").is_err());
        assert!(LossCategory::custom("production").is_err());
        let t = Taxonomy::new(&["setup".into(), "coffee".into()]).unwrap();
        assert!(t.contains(&LossCategory::UNEXPLAINED));
        assert_eq!(t.categories().len(), 3);
        assert_eq!(
            serde_json::to_string(&TimeCategory::Loss(LossCategory::SETUP)).unwrap(),
            "\"setup\""
        );
    }
}
