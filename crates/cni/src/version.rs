//! Spec versions: which one a config asks for, which verbs it allows, and VERSION's output.

use std::fmt;

use serde_json::{Map, Value};

use crate::spec::{CniError, Command, SUPPORTED_VERSIONS};

/// A spec version this plugin speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CniVersion {
    V0_3_0,
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

impl CniVersion {
    pub const ALL: [CniVersion; 5] = [
        CniVersion::V0_3_0,
        CniVersion::V0_3_1,
        CniVersion::V0_4_0,
        CniVersion::V1_0_0,
        CniVersion::V1_1_0,
    ];
    pub const LATEST: CniVersion = CniVersion::V1_1_0;

    pub fn as_str(self) -> &'static str {
        match self {
            CniVersion::V0_3_0 => "0.3.0",
            CniVersion::V0_3_1 => "0.3.1",
            CniVersion::V0_4_0 => "0.4.0",
            CniVersion::V1_0_0 => "1.0.0",
            CniVersion::V1_1_0 => "1.1.0",
        }
    }

    /// The version spelled `s`, if this plugin speaks it.
    pub fn parse(s: &str) -> Option<Self> {
        CniVersion::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Results before 1.0.0 carry `version` ("4"/"6") in each IP.
    pub fn ip_has_version(self) -> bool {
        self < CniVersion::V1_0_0
    }

    /// 1.1.0 added interface `mtu`, `socketPath`, `pciID` and route `mtu`, `advmss`,
    /// `priority`, `table`, `scope`.
    pub fn has_1_1_fields(self) -> bool {
        self >= CniVersion::V1_1_0
    }

    /// The first version that has `command` (CHECK 0.4.0; STATUS and GC 1.1.0).
    pub fn first_with(command: Command) -> CniVersion {
        match command {
            Command::Check => CniVersion::V0_4_0,
            Command::Status | Command::Gc => CniVersion::V1_1_0,
            Command::Add | Command::Del | Command::Version => CniVersion::V0_3_0,
        }
    }

    /// Refuses a verb that this version of the spec does not have (code 1), as libcni's
    /// skel does ("config version does not allow CHECK").
    pub fn check_allows(self, command: Command) -> Result<(), CniError> {
        let first = Self::first_with(command);
        if self < first {
            return Err(CniError::incompatible_version(format!(
                "invalid cniVersion '{self}' for {command}: {first} or later"
            )));
        }
        Ok(())
    }
}

impl fmt::Display for CniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the supported versions are, for messages.
fn supported_list() -> String {
    SUPPORTED_VERSIONS.join(", ")
}

/// The version a config asks for.
///
/// `cniVersion` wins when present: it is what the runtime decodes the result with (libcni
/// 1.2 picks the highest version of a `cniVersions` list it supports and writes it into
/// each plugin's `cniVersion`), so it must be one this plugin speaks. Without
/// `cniVersion`, the highest version of `cniVersions` this plugin speaks is taken; entries
/// it does not know (a future "1.2.0") are skipped. Neither, or nothing usable: code 1,
/// naming the field and the versions supported.
pub fn negotiate(conf: &Map<String, Value>) -> Result<CniVersion, CniError> {
    match conf.get("cniVersion") {
        Some(Value::String(s)) => {
            return CniVersion::parse(s).ok_or_else(|| {
                CniError::incompatible_version(format!(
                    "invalid cniVersion '{}': one of {}",
                    s.escape_debug(),
                    supported_list()
                ))
            });
        }
        Some(Value::Null) | None => {}
        Some(other) => {
            return Err(CniError::incompatible_version(format!(
                "invalid cniVersion {other}: a string, one of {}",
                supported_list()
            )));
        }
    }
    match conf.get("cniVersions") {
        Some(Value::Array(list)) => {
            let mut best = None;
            for v in list {
                let Value::String(s) = v else {
                    return Err(CniError::incompatible_version(format!(
                        "invalid cniVersions entry {v}: version strings like \"1.1.0\""
                    )));
                };
                best = best.max(CniVersion::parse(s));
            }
            best.ok_or_else(|| {
                CniError::incompatible_version(format!(
                    "invalid cniVersions {}: at least one of {}",
                    Value::Array(list.clone()),
                    supported_list()
                ))
            })
        }
        Some(Value::Null) | None => Err(CniError::incompatible_version(format!(
            "missing cniVersion in config: one of {}",
            supported_list()
        ))),
        Some(other) => Err(CniError::incompatible_version(format!(
            "invalid cniVersions {other}: a list of version strings"
        ))),
    }
}

/// VERSION's output: `{"cniVersion": "1.1.0", "supportedVersions": [...]}`.
pub fn version_output() -> String {
    serde_json::json!({
        "cniVersion": CniVersion::LATEST.as_str(),
        "supportedVersions": SUPPORTED_VERSIONS,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn conf(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn cni_version_is_taken_and_checked() {
        for s in SUPPORTED_VERSIONS {
            let v = negotiate(&conf(serde_json::json!({"cniVersion": s}))).unwrap();
            assert_eq!(v.as_str(), s);
        }
        let e = negotiate(&conf(serde_json::json!({"cniVersion": "0.2.0"}))).unwrap_err();
        assert_eq!(e.code, 1);
        assert_eq!(
            e.msg,
            "invalid cniVersion '0.2.0': one of 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"
        );
        let e = negotiate(&conf(serde_json::json!({"cniVersion": 1}))).unwrap_err();
        assert_eq!(e.code, 1);
        assert!(e.msg.starts_with("invalid cniVersion 1: a string"));
        let e = negotiate(&conf(serde_json::json!({}))).unwrap_err();
        assert_eq!(e.code, 1);
        assert!(e.msg.starts_with("missing cniVersion"));
    }

    #[test]
    fn cni_versions_gives_the_highest_known() {
        let v = negotiate(&conf(
            serde_json::json!({"cniVersions": ["0.3.1", "1.0.0", "1.2.0", "0.4.0"]}),
        ))
        .unwrap();
        assert_eq!(v, CniVersion::V1_0_0);
        // cniVersion, when there, is what the runtime decodes with.
        let v = negotiate(&conf(
            serde_json::json!({"cniVersion": "0.4.0", "cniVersions": ["1.1.0"]}),
        ))
        .unwrap();
        assert_eq!(v, CniVersion::V0_4_0);
        let e = negotiate(&conf(
            serde_json::json!({"cniVersions": ["0.2.0", "2.0.0"]}),
        ))
        .unwrap_err();
        assert_eq!(e.code, 1);
        assert_eq!(
            e.msg,
            "invalid cniVersions [\"0.2.0\",\"2.0.0\"]: at least one of 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"
        );
        assert_eq!(
            negotiate(&conf(serde_json::json!({"cniVersions": [1]})))
                .unwrap_err()
                .code,
            1
        );
        assert_eq!(
            negotiate(&conf(serde_json::json!({"cniVersions": "1.0.0"})))
                .unwrap_err()
                .code,
            1
        );
    }

    #[test]
    fn verbs_need_their_version() {
        assert!(CniVersion::V0_4_0.check_allows(Command::Check).is_ok());
        let e = CniVersion::V0_3_1.check_allows(Command::Check).unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (1, "invalid cniVersion '0.3.1' for CHECK: 0.4.0 or later")
        );
        for c in [Command::Gc, Command::Status] {
            assert_eq!(CniVersion::V1_0_0.check_allows(c).unwrap_err().code, 1);
            assert!(CniVersion::V1_1_0.check_allows(c).is_ok());
        }
        assert!(CniVersion::V0_3_0.check_allows(Command::Add).is_ok());
    }

    #[test]
    fn version_output_lists_everything() {
        let v: Value = serde_json::from_str(&version_output()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "cniVersion": "1.1.0",
                "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
            })
        );
        assert_eq!(
            CniVersion::ALL.map(CniVersion::as_str),
            SUPPORTED_VERSIONS,
            "the enum and the list agree"
        );
    }
}
