//! vfpool's vocabulary: the values every other crate passes around.
//!
//! Nothing here does I/O. Every parser returns [`InvalidValue`], whose message names the
//! field, the value that was given, and what is allowed, so front ends can print it as is.

#![forbid(unsafe_code)]

/// Serializes a type as its `Display` text and deserializes it through its `FromStr`, so the
/// JSON and the command line spell values the same way (`"0000:03:00.0"`, `"eno49#0-3"`).
macro_rules! serde_as_text {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

mod pci;
mod selector;
mod vf;

pub use pci::{MacAddr, PciAddr};
pub use selector::{PfRef, VfIndexSet, VfSelector};
pub use vf::{
    LinkState, MAX_QOS, MAX_VLAN, NicState, VfConfig, VfSettings, VlanProto, parse_on_off,
};

/// A value that does not parse or is out of range.
///
/// Rendered as one line: `invalid vlan '5000': allowed 0..=4094`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} '{value}': {allowed}")]
pub struct InvalidValue {
    /// The name of the field or option, as the user wrote it (`vlan`, `mac`, `--vfs`).
    pub field: &'static str,
    /// The value as given.
    pub value: String,
    /// What is allowed instead.
    pub allowed: String,
}

impl InvalidValue {
    pub fn new(field: &'static str, value: impl ToString, allowed: impl ToString) -> Self {
        Self {
            field,
            value: value.to_string(),
            allowed: allowed.to_string(),
        }
    }
}
