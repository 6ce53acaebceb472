//! The CNI versions the plugin speaks, and the VERSION command's answer.
//!
//! 1.1.0 is the plugin's own; 1.0.0 and 0.4.0 are answered in their own
//! result formats, because runtimes still send them (containerd's and
//! Podman's shipped configurations). STATUS and GC exist from 1.1.0 on.

use serde::Serialize;

use crate::error::{CniError, Code};

/// A spec version the plugin speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

/// Every version the plugin speaks, oldest first (VERSION lists them).
pub const SUPPORTED: [Version; 3] = [Version::V0_4_0, Version::V1_0_0, Version::V1_1_0];

/// The plugin's own version: what it answers in when the configuration
/// gave none it speaks.
pub const CURRENT: Version = Version::V1_1_0;

impl Version {
    pub const fn as_str(self) -> &'static str {
        match self {
            Version::V0_4_0 => "0.4.0",
            Version::V1_0_0 => "1.0.0",
            Version::V1_1_0 => "1.1.0",
        }
    }

    /// Parses a configuration's `cniVersion`; one the plugin does not
    /// speak is the spec's code 1, naming it and what is spoken.
    pub fn parse(value: &str) -> Result<Self, CniError> {
        SUPPORTED
            .into_iter()
            .find(|v| v.as_str() == value)
            .ok_or_else(|| {
                let spoken: Vec<&str> = SUPPORTED.iter().map(|v| v.as_str()).collect();
                CniError::new(
                    Code::IncompatibleVersion,
                    format!(
                        "cniVersion {value:?} is not supported; netagent-cni speaks {}",
                        spoken.join(", ")
                    ),
                )
            })
    }

    /// Whether STATUS and GC exist in this version (1.1.0 on).
    pub fn has_status_and_gc(self) -> bool {
        self >= Version::V1_1_0
    }
}

/// The VERSION command's answer, in the plugin's own version.
pub fn version_result() -> String {
    #[derive(Serialize)]
    struct Answer {
        #[serde(rename = "cniVersion")]
        cni_version: &'static str,
        #[serde(rename = "supportedVersions")]
        supported: Vec<&'static str>,
    }
    let answer = Answer {
        cni_version: CURRENT.as_str(),
        supported: SUPPORTED.iter().map(|v| v.as_str()).collect(),
    };
    // A struct of strings always serializes.
    serde_json::to_string(&answer).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spoken_versions_parse_and_others_are_code_1() {
        for v in SUPPORTED {
            assert_eq!(Version::parse(v.as_str()), Ok(v));
        }
        for bad in ["0.3.1", "1.2.0", "1.1", "", "v1.1.0"] {
            let e = Version::parse(bad).expect_err(bad);
            assert_eq!(e.code, Code::IncompatibleVersion, "{bad}");
            assert!(e.details.contains(&format!("{bad:?}")), "{e}");
            assert!(e.details.contains("0.4.0, 1.0.0, 1.1.0"), "{e}");
        }
        assert!(Version::V1_1_0.has_status_and_gc());
        assert!(!Version::V1_0_0.has_status_and_gc());
    }

    #[test]
    fn version_answers_as_the_spec_shows() {
        let v: serde_json::Value = serde_json::from_str(&version_result()).expect("JSON");
        assert_eq!(
            v,
            serde_json::json!({
                "cniVersion": "1.1.0",
                "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"],
            })
        );
    }
}
