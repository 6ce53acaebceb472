//! Which XDP attach mode each served interface gets, and why.
//!
//! Native XDP pays off only where it runs before the kernel builds an skb
//! and costs the interface nothing else: physical NICs whose driver runs
//! XDP in its receive path and keeps its offloads (TSO on the senders'
//! side, checksum offload, GRO in software after the program). Elsewhere
//! it costs throughput:
//!
//! - **veth**: attaching native XDP makes the kernel turn off GSO on the
//!   peer (unless GRO is requested on the XDP side), so every local or
//!   container sender cuts its TCP streams into MTU-sized packets; and
//!   such senders' packets carry CHECKSUM_PARTIAL seeds, which XDP cannot
//!   translate (it defers them to TC), so XDP is pure cost there;
//! - **virtio_net**: native XDP needs the guest offloads (GUEST_TSO,
//!   GUEST_CSUM) switched off, so the host hands the VM MTU-sized packets;
//! - **anything else** (bridges, bonds, VLANs, tun, dummy, drivers with no
//!   native XDP): generic XDP runs after the skb is built, where TC ingress
//!   does the same work for less.
//!
//! `--xdp-mode auto` (the default) therefore chooses native XDP for the
//! drivers below and TC only for everything else; `native`, `generic` and
//! `off` force a mode on every interface.

use super::XdpAttachMode;

/// Drivers whose native XDP runs in the receive path and keeps the
/// interface's offloads: Intel (ice, i40e, ixgbe, ixgbevf, igb, igc),
/// NVIDIA/Mellanox (mlx5_core, mlx4_en), Broadcom (bnxt_en), Netronome
/// (nfp), Marvell/QLogic (qede, mvneta, mvpp2), Amazon (ena), Google
/// (gve), AMD/Solarflare (sfc), NXP (dpaa2-eth, enetc, fec), Microchip
/// (lan966x-switch), Synopsys (stmmac), Engleder (tsnep).
pub const NATIVE_XDP_DRIVERS: &[&str] = &[
    "ice",
    "i40e",
    "ixgbe",
    "ixgbevf",
    "igb",
    "igc",
    "mlx5_core",
    "mlx4_en",
    "bnxt_en",
    "nfp",
    "qede",
    "mvneta",
    "mvpp2",
    "ena",
    "gve",
    "sfc",
    "dpaa2-eth",
    "enetc",
    "fec",
    "lan966x-switch",
    "stmmac",
    "tsnep",
];

/// The mode an interface gets: `mode` is never `Auto`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModeChoice {
    pub mode: XdpAttachMode,
    /// Why, in a sentence (logged and shown by `netagent stats`).
    pub reason: String,
}

/// The mode `requested` gives an interface whose driver is `driver`
/// (`None`: the kernel reports none, as for bridges and bonds).
pub fn choose(requested: XdpAttachMode, driver: Option<&str>) -> ModeChoice {
    let shown = driver.unwrap_or("none");
    let (mode, reason) = match requested {
        XdpAttachMode::Native => (
            XdpAttachMode::Native,
            format!("native XDP as asked (driver {shown})"),
        ),
        XdpAttachMode::Generic => (
            XdpAttachMode::Generic,
            format!("generic XDP as asked (driver {shown})"),
        ),
        XdpAttachMode::Off => (
            XdpAttachMode::Off,
            format!("TC only as asked (driver {shown})"),
        ),
        XdpAttachMode::Auto => match driver {
            Some(d) if NATIVE_XDP_DRIVERS.contains(&d) => (
                XdpAttachMode::Native,
                format!(
                    "native XDP: driver {d} runs XDP before the skb is built and keeps its offloads"
                ),
            ),
            Some("veth") => (
                XdpAttachMode::Off,
                "TC only: native XDP on a veth turns off GSO on its peer, and its senders' CHECKSUM_PARTIAL packets would be left to TC anyway".to_owned(),
            ),
            Some("virtio_net") => (
                XdpAttachMode::Off,
                "TC only: native XDP on virtio_net needs the guest offloads (TSO, checksum) switched off".to_owned(),
            ),
            _ => (
                XdpAttachMode::Off,
                format!(
                    "TC only: driver {shown} has no native XDP that gains over TC (generic XDP runs after the skb is built)"
                ),
            ),
        },
    };
    ModeChoice { mode, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_picks_native_only_where_it_gains() {
        for (driver, want) in [
            (Some("mlx5_core"), XdpAttachMode::Native),
            (Some("ice"), XdpAttachMode::Native),
            (Some("i40e"), XdpAttachMode::Native),
            (Some("veth"), XdpAttachMode::Off),
            (Some("virtio_net"), XdpAttachMode::Off),
            (Some("bridge"), XdpAttachMode::Off),
            (Some("tun"), XdpAttachMode::Off),
            (None, XdpAttachMode::Off),
        ] {
            let choice = choose(XdpAttachMode::Auto, driver);
            assert_eq!(choice.mode, want, "{driver:?}");
            assert!(!choice.reason.is_empty());
        }
        assert!(
            choose(XdpAttachMode::Auto, Some("veth"))
                .reason
                .contains("GSO")
        );
    }

    #[test]
    fn a_forced_mode_is_kept_whatever_the_driver() {
        for mode in [
            XdpAttachMode::Native,
            XdpAttachMode::Generic,
            XdpAttachMode::Off,
        ] {
            assert_eq!(choose(mode, Some("veth")).mode, mode);
            assert!(choose(mode, Some("veth")).reason.contains("as asked"));
        }
    }
}
