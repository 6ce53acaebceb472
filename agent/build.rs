//! Builds the eBPF object (datapath-ebpf) with the pinned nightly and
//! bpf-linker, for `include_bytes_aligned!` in src/datapath/object.rs.
//!
//! `AYA_BUILD_SKIP=1` skips the eBPF build and embeds an empty placeholder,
//! so `cargo check`/`clippy`/docs work without nightly or bpf-linker. A
//! binary built that way refuses to start the datapath with a clear error.
use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

/// The dated nightly whose LLVM matches bpf-linker's (TOOLCHAIN.md §1).
/// Keep in sync with scripts/setup.sh.
const BPF_TOOLCHAIN: &str = "nightly-2026-06-20";
const EBPF_PACKAGE: &str = "datapath-ebpf";
const EBPF_BIN: &str = "netagent-datapath";

fn main() -> anyhow::Result<()> {
    println!("cargo::rerun-if-env-changed=AYA_BUILD_SKIP");
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
        fs::write(out_dir.join(EBPF_BIN), b"").context("writing placeholder eBPF object")?;
        return Ok(());
    }
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == EBPF_PACKAGE)
        .ok_or_else(|| anyhow!("package {EBPF_PACKAGE} not in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("{EBPF_PACKAGE} manifest has no parent"))?;
    aya_build::build_ebpf(
        [Package {
            name: EBPF_PACKAGE,
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        Toolchain::Custom(BPF_TOOLCHAIN),
    )
}
