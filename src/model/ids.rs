use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("an id must not be empty")]
    Empty,
    #[error("an id is at most 64 characters, found {0}")]
    TooLong(usize),
    #[error(
        "an id may hold only a-z, A-Z, 0-9, '-', '_' and '.', found {found:?} at position {position}"
    )]
    BadChar { found: char, position: usize },
}

/// A machine's stable id, used in every record, topic and URL (`okuma-1`).
///
/// Restricted to characters that are safe in an MQTT topic level, a URL path segment and an
/// OPC UA browse name, so that every northbound face can use it unchanged.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct MachineId(Arc<str>);

impl MachineId {
    pub fn new(s: &str) -> Result<Self, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if s.chars().count() > 64 {
            return Err(IdError::TooLong(s.chars().count()));
        }
        if let Some((position, found)) = s
            .chars()
            .enumerate()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(IdError::BadChar { found, position });
        }
        Ok(Self(Arc::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for MachineId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        MachineId::new(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MachineId({})", self.0)
    }
}

/// A signal's id: a canonical signal (`execution`, see [`super::signals`]) or, before a profile
/// maps it, the source's own key (`Mp1Fovr`). Any non-empty string; cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SignalId(Arc<str>);

impl SignalId {
    pub fn new(s: &str) -> Self {
        Self(Arc::from(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The address of the shared text: equal for clones of one id (a driver that caches its
    /// keys sends the same one each time), so a cache may use it as a cheap key while it
    /// holds a clone (which keeps the address from being reused).
    pub fn ptr(&self) -> usize {
        Arc::as_ptr(&self.0) as *const u8 as usize
    }

    /// True when both are clones of one id.
    pub fn same(&self, other: &SignalId) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl From<&str> for SignalId {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl fmt::Display for SignalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SignalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignalId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_ids_are_topic_and_url_safe() {
        assert!(MachineId::new("okuma-1").is_ok());
        assert!(MachineId::new("haas_vf2.bay3").is_ok());
        assert_eq!(MachineId::new(""), Err(IdError::Empty));
        assert_eq!(
            MachineId::new("a/b"),
            Err(IdError::BadChar {
                found: '/',
                position: 1
            })
        );
        assert!(MachineId::new("a+b").is_err());
        assert!(MachineId::new("a#").is_err());
        assert!(MachineId::new(&"x".repeat(65)).is_err());
    }
}
