//! vfpool's vocabulary: the values every other crate passes around.
//!
//! Nothing here does I/O. Every parser returns [`InvalidValue`], whose message names the
//! field, the value that was given, and what is allowed, so front ends can print it as is.

#![forbid(unsafe_code)]

/// Serializes a type as its `Display` text and deserializes it through its `FromStr`, so the
/// JSON and the command line spell values the same way (`"0000:03:00.0"`, `"eno49#0-3"`).
macro_rules! serde_as_text {
    ($t:ty, $example:expr) => {
        /// In the OpenAPI document: a string, as the type's `Display` writes it.
        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $t {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .examples([$example])
                    .into()
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $t {}

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

pub mod driver;
mod owner;
mod pci;
mod selector;
mod vf;

pub use driver::{NON_NET_DRIVERS, gives_netdev, vf_driver_for_pf};
pub use owner::{MAX_OWNER_CHARS, is_invisible, validate_owner};
pub use pci::{MacAddr, PciAddr};
pub use selector::{PfRef, VfIndexSet, VfSelector};
pub use vf::{
    LinkState, MAX_QOS, MAX_VLAN, NicState, VfConfig, VfSettings, VlanProto, parse_on_off,
};

/// A value that does not parse or is out of range.
///
/// Rendered as one line: `invalid vlan '5000': allowed 0..=4094`. The value is shown with
/// control and invisible characters escaped (`'vm-2\u{200b}'`, `'a\nb'`) and cut after
/// [`InvalidValue::SHOWN_CHARS`] characters (`'aaaa…'`), so that the line stays one short
/// line whatever was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} '{value}': {allowed}")]
pub struct InvalidValue {
    /// The name of the field or option, as the user wrote it (`vlan`, `mac`, `--vfs`).
    pub field: &'static str,
    /// The value as given, escaped and cut as shown in the message.
    pub value: String,
    /// What is allowed instead.
    pub allowed: String,
}

impl InvalidValue {
    /// How many characters of a value an error shows.
    pub const SHOWN_CHARS: usize = 64;

    pub fn new(field: &'static str, value: impl ToString, allowed: impl ToString) -> Self {
        Self {
            field,
            value: shown(&value.to_string()),
            allowed: allowed.to_string(),
        }
    }
}

/// `value` as an error shows it: control characters escaped the way Rust's `{:?}` does
/// (`\n`, `\u{1b}`), other invisible ones as `\u{200b}`, and at most
/// [`InvalidValue::SHOWN_CHARS`] characters, then `…`.
fn shown(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(4 * InvalidValue::SHOWN_CHARS));
    for (i, c) in value.chars().enumerate() {
        if i == InvalidValue::SHOWN_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_debug());
        } else if is_invisible(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_value_is_shown_escaped_and_cut() {
        let e = InvalidValue::new("pool", "a\nb\u{202e}c\td", "names");
        assert_eq!(e.to_string(), "invalid pool 'a\\nb\\u{202e}c\\td': names");
        let huge = "x".repeat(10 * 1024);
        let e = InvalidValue::new("select", &huge, "a selector");
        let text = e.to_string();
        assert_eq!(
            text,
            format!("invalid select '{}…': a selector", "x".repeat(64))
        );
        // Exactly 64 characters are not cut; multi-byte characters count as one.
        let e = InvalidValue::new("owner", "é".repeat(64), "x");
        assert_eq!(e.value, "é".repeat(64));
        let e = InvalidValue::new("owner", "é".repeat(65), "x");
        assert_eq!(e.value, format!("{}…", "é".repeat(64)));
    }
}
