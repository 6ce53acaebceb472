//! Rebuild tracking only: the eBPF crate links with bpf-linker, so a new
//! bpf-linker must rebuild it. Built from agent/build.rs through aya-build.
fn main() {
    let bpf_linker =
        which::which("bpf-linker").expect("bpf-linker must be on PATH (scripts/setup.sh)");
    println!("cargo:rerun-if-changed={}", bpf_linker.display());
}
