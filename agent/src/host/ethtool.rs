//! The driver behind an interface, from the ethtool ioctl
//! (`SIOCETHTOOL`/`ETHTOOL_GDRVINFO`), in the calling thread's network
//! namespace (the daemon's own).

use std::{io, os::fd::AsRawFd as _};

/// `ETHTOOL_GDRVINFO`.
const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;
/// `SIOCETHTOOL`.
const SIOCETHTOOL: libc::c_ulong = 0x8946;

/// `struct ethtool_drvinfo` (linux/ethtool.h).
#[repr(C)]
struct DrvInfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

/// `struct ifreq` with `ifr_data`.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: *mut DrvInfo,
    _pad: [u8; 16],
}

/// The driver name of `iface` (`veth`, `mlx5_core`, ...); `None` when the
/// interface has none to report (bridges report `bridge`, some virtual
/// devices nothing at all).
pub fn driver(iface: &str) -> io::Result<Option<String>> {
    if iface.is_empty() || iface.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {iface:?}"),
        ));
    }
    // SAFETY: plain socket(2); the descriptor is owned at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: all-zero is a valid DrvInfo.
    let mut info: DrvInfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: &mut info,
        _pad: [0; 16],
    };
    req.name[..iface.len()].copy_from_slice(iface.as_bytes());
    // SAFETY: req is a valid ifreq whose data points at a DrvInfo that
    // outlives the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut req) } != 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            // No ethtool operations: a device without a driver to report.
            Some(libc::EOPNOTSUPP) => Ok(None),
            _ => Err(e),
        };
    }
    let len = info.driver.iter().position(|&b| b == 0).unwrap_or(32);
    let name = String::from_utf8_lossy(&info.driver[..len]).into_owned();
    Ok((!name.is_empty()).then_some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_missing_interfaces() {
        // lo has no ethtool driver info on some kernels and "" on others;
        // either way it is not an error.
        assert!(driver("lo").is_ok());
        assert!(driver("nonexistent-if0").is_err());
        assert!(driver("").is_err());
        assert!(driver("a-name-much-too-long").is_err());
    }
}
