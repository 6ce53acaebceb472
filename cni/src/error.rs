//! The CNI error object (`{"cniVersion", "code", "msg", "details"}`) and
//! the spec's well-known codes. A plugin prints it on stdout and exits
//! non-zero.

use serde::Serialize;

/// A well-known error code (CNI spec, "Well-known Error Codes"); codes of
/// 100 and above are the plugin's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// 1: the configuration's `cniVersion` is not one the plugin speaks.
    IncompatibleVersion,
    /// 2: a field of the network configuration the plugin does not
    /// support (the message names the key and value).
    UnsupportedField,
    /// 3: the container is unknown (the runtime need not clean up).
    UnknownContainer,
    /// 4: a missing or invalid `CNI_*` variable (the message names it).
    InvalidEnvironment,
    /// 5: reading the configuration failed.
    Io,
    /// 6: the configuration is not JSON of the expected shape.
    Decode,
    /// 7: the network configuration fails validation.
    InvalidConfig,
    /// 11: a transient condition (the daemon is not reachable): retry.
    TryAgainLater,
    /// 50 (STATUS): the plugin cannot serve ADD now.
    NotAvailable,
    /// 51 (STATUS): as 50, and existing containers may have limited
    /// connectivity.
    NotAvailableLimitedConnectivity,
    /// 100 and above: netagent's own.
    Plugin(u32),
}

impl Code {
    /// The number the spec gives the code.
    pub const fn number(self) -> u32 {
        match self {
            Code::IncompatibleVersion => 1,
            Code::UnsupportedField => 2,
            Code::UnknownContainer => 3,
            Code::InvalidEnvironment => 4,
            Code::Io => 5,
            Code::Decode => 6,
            Code::InvalidConfig => 7,
            Code::TryAgainLater => 11,
            Code::NotAvailable => 50,
            Code::NotAvailableLimitedConnectivity => 51,
            Code::Plugin(n) => n,
        }
    }

    /// The spec's short text for the code.
    pub const fn text(self) -> &'static str {
        match self {
            Code::IncompatibleVersion => "Incompatible CNI version",
            Code::UnsupportedField => "Unsupported field in network configuration",
            Code::UnknownContainer => "Container unknown or does not exist",
            Code::InvalidEnvironment => "Invalid necessary environment variables",
            Code::Io => "I/O failure",
            Code::Decode => "Failed to decode content",
            Code::InvalidConfig => "Invalid network config",
            Code::TryAgainLater => "Try again later",
            Code::NotAvailable => "The plugin is not available",
            Code::NotAvailableLimitedConnectivity => {
                "The plugin is not available, and existing containers may have limited connectivity"
            }
            Code::Plugin(_) => "netagent error",
        }
    }
}

/// A CNI error: its code, and what exactly was wrong (`details`, which
/// names the offending variable, field or value).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} ({}): {details}", code.text(), code.number())]
pub struct CniError {
    pub code: Code,
    pub details: String,
}

impl CniError {
    pub fn new(code: Code, details: impl Into<String>) -> Self {
        Self {
            code,
            details: details.into(),
        }
    }

    /// The error object the spec prints, in `cni_version`'s format (the
    /// configuration's version when it was read, else the newest).
    pub fn to_json(&self, cni_version: &str) -> String {
        #[derive(Serialize)]
        struct Object<'a> {
            #[serde(rename = "cniVersion")]
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        let object = Object {
            cni_version,
            code: self.code.number(),
            msg: self.code.text(),
            details: &self.details,
        };
        // A struct of strings and a number always serializes.
        serde_json::to_string(&object).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_specs() {
        let cases = [
            (Code::IncompatibleVersion, 1),
            (Code::UnsupportedField, 2),
            (Code::UnknownContainer, 3),
            (Code::InvalidEnvironment, 4),
            (Code::Io, 5),
            (Code::Decode, 6),
            (Code::InvalidConfig, 7),
            (Code::TryAgainLater, 11),
            (Code::NotAvailable, 50),
            (Code::NotAvailableLimitedConnectivity, 51),
            (Code::Plugin(120), 120),
        ];
        for (code, number) in cases {
            assert_eq!(code.number(), number, "{code:?}");
        }
    }

    #[test]
    fn the_error_object_is_the_specs_json() {
        let e = CniError::new(Code::InvalidEnvironment, "CNI_NETNS is not set");
        let v: serde_json::Value = serde_json::from_str(&e.to_json("1.1.0")).expect("JSON");
        assert_eq!(
            v,
            serde_json::json!({
                "cniVersion": "1.1.0",
                "code": 4,
                "msg": "Invalid necessary environment variables",
                "details": "CNI_NETNS is not set",
            })
        );
        // No details: the key is left out, as optional fields are.
        let v: serde_json::Value =
            serde_json::from_str(&CniError::new(Code::TryAgainLater, "").to_json("0.4.0"))
                .expect("JSON");
        assert!(v.get("details").is_none(), "{v}");
        assert_eq!(v["cniVersion"], "0.4.0");
        assert_eq!(
            e.to_string(),
            "Invalid necessary environment variables (4): CNI_NETNS is not set"
        );
    }
}
