//! `netagent-cni`: what a container runtime executes. Reads the `CNI_*`
//! environment and the network configuration on stdin, runs the command,
//! prints the result (or the spec's error object) on stdout and exits
//! non-zero on error.

use std::{
    io::{Read as _, Write as _},
    process::ExitCode,
};

use netagent_cni::{
    env::{Command, Env},
    error::{CniError, Code},
    plugin,
    version::{CURRENT, Version},
};

fn main() -> ExitCode {
    let mut input = Vec::new();
    let outcome = Env::from_process().and_then(|env| {
        if env.command != Command::Version {
            std::io::stdin()
                .read_to_end(&mut input)
                .map_err(|e| CniError::new(Code::Io, format!("reading the configuration: {e}")))?;
        }
        plugin::run(&env, &input)
    });
    let mut stdout = std::io::stdout().lock();
    match outcome {
        Ok(output) => {
            if let Some(text) = output {
                let _ = writeln!(stdout, "{text}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(stdout, "{}", e.to_json(error_version(&input)));
            ExitCode::FAILURE
        }
    }
}

/// The version the error object is written in: the configuration's, if
/// it names one the plugin speaks, else the plugin's own.
fn error_version(input: &[u8]) -> &'static str {
    serde_json::from_slice::<serde_json::Value>(input)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_owned))
        .and_then(|v| Version::parse(&v).ok())
        .unwrap_or(CURRENT)
        .as_str()
}
