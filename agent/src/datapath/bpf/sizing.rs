//! The sizes of the maps whose memory depends on the host: the per-CPU
//! counter array (by CPU count, `datapath_common::stats_slots`) and the
//! preallocated flow tables (by memory, `datapath_common::flow_table_shift`).
//!
//! A map already pinned keeps the size it has: aya refuses to reuse a pin
//! of another size, and making it anew would drop every tracked flow (a
//! host given more memory, or a daemon of another version, keeps the old
//! sizes until `netagent teardown`).

use std::io;

use aya::{EbpfLoader, maps::MapData};
use datapath_common::{
    MAX_EMBRYONIC_FLOWS, MAX_EMBRYONIC_FLOWS6, MAX_FLOWS, MAX_FLOWS6, MAX_FRAGMENTS,
    MAX_FRAGMENTS6, MAX_HAIRPIN_FLOWS, MAX_HAIRPIN_FLOWS6, MAX_SHARES, MAX_SHARES6,
    MAX_SNAT_ENTRIES, MAX_SNAT_ENTRIES6, MAX_SOCK_FLOWS, MAX_UDP_FLOWS, MAX_UDP_FLOWS6,
    flow_table_entries,
    map_names::{
        CT_SYN, CT_SYN6, CT_TCP, CT_TCP6, CT_UDP, CT_UDP6, FRAGMENTS, FRAGMENTS6, HAIRPIN,
        HAIRPIN6, PUB_STATS, SHARES, SHARES6, SNAT, SNAT6, SOCK_REV, SOCK_REV6,
    },
};
use tracing::info;

use super::{PinDir, io_err, map_err};
use crate::datapath::DatapathError;

/// The flow tables and their full sizes (hosts with more than 4 GiB).
const FLOW_TABLES: [(&str, u32); 16] = [
    (CT_TCP, MAX_FLOWS),
    (CT_SYN, MAX_EMBRYONIC_FLOWS),
    (CT_UDP, MAX_UDP_FLOWS),
    (SNAT, MAX_SNAT_ENTRIES),
    (SHARES, MAX_SHARES),
    (FRAGMENTS, MAX_FRAGMENTS),
    (SOCK_REV, MAX_SOCK_FLOWS),
    (HAIRPIN, MAX_HAIRPIN_FLOWS),
    (SOCK_REV6, MAX_SOCK_FLOWS),
    (CT_TCP6, MAX_FLOWS6),
    (CT_SYN6, MAX_EMBRYONIC_FLOWS6),
    (CT_UDP6, MAX_UDP_FLOWS6),
    (SNAT6, MAX_SNAT_ENTRIES6),
    (SHARES6, MAX_SHARES6),
    (FRAGMENTS6, MAX_FRAGMENTS6),
    (HAIRPIN6, MAX_HAIRPIN_FLOWS6),
];

/// Tells `loader` the size of every host-sized map: the pinned map's if
/// there is one, else what this host's CPUs and memory call for.
pub fn apply(loader: &mut EbpfLoader<'_>, pins: &PinDir) -> Result<(), DatapathError> {
    let cpus = aya::util::nr_cpus()
        .map_err(|(op, e)| io_err(format!("counting CPUs ({op})"))(e))?
        .get();
    let ram = ram_bytes().map_err(io_err("reading the host's memory size (sysinfo)"))?;
    let slots = sized(pins, PUB_STATS, datapath_common::stats_slots(cpus))?;
    loader.map_max_entries(PUB_STATS, slots);
    let mut flows = Vec::with_capacity(FLOW_TABLES.len());
    for (name, full) in FLOW_TABLES {
        let entries = sized(pins, name, flow_table_entries(full, ram))?;
        loader.map_max_entries(name, entries);
        flows.push(format!("{name}={entries}"));
    }
    info!(
        cpus,
        ram_mib = ram >> 20,
        counter_slots = slots,
        flow_tables = %flows.join(" "),
        "map sizes (pinned maps keep theirs)"
    );
    Ok(())
}

/// The entries of the map pinned as `name`, or `wanted` if none is.
fn sized(pins: &PinDir, name: &str, wanted: u32) -> Result<u32, DatapathError> {
    let path = pins.map(name);
    if !path.exists() {
        return Ok(wanted);
    }
    let op = || format!("reading the size of pinned map {}", path.display());
    let map = MapData::from_pin(&path).map_err(map_err(op()))?;
    Ok(map.info().map_err(map_err(op()))?.max_entries())
}

/// The host's memory, from sysinfo(2).
fn ram_bytes() -> io::Result<u64> {
    // SAFETY: sysinfo fills the zeroed struct it is given.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::sysinfo(&mut info) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // `totalram` is a C unsigned long: 64 bits here, 32 on 32-bit hosts.
    Ok(info.totalram as u64 * u64::from(info.mem_unit))
}
