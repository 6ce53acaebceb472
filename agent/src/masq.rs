//! Masquerade settings: which source ports masquerade may use, checked
//! against the host's ephemeral range.
//!
//! A masqueraded flow must never take a tuple the host's own connections
//! may pick: the host would never know, and replies would go to the wrong
//! one. So the default pool is 1024-65535 minus the host's ephemeral range
//! (`net.ipv4.ip_local_port_range`; with Linux's defaults 1024-32767 and
//! 61000-65535, 36,280 ports per destination). `--masquerade-ports` may
//! name other ranges; where they overlap the ephemeral range (minus
//! `ip_local_reserved_ports`), the daemon warns with the exact overlap and
//! the sysctl that removes it.

use std::fmt;

use datapath_common::{DatapathConfig, PortRange};

/// A parse or consistency error of `--masquerade-ports`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MasqPortsError {
    #[error(
        "invalid --masquerade-ports {0:?}: expected one or two ranges LO-HI[,LO-HI] of ports 1-65535 (LO <= HI)"
    )]
    Syntax(String),
    #[error("invalid --masquerade-ports {0:?}: the ranges overlap")]
    Overlap(String),
    #[error(
        "no masquerade ports outside the host's ephemeral range {lo}-{hi}: give --masquerade-ports"
    )]
    NoneFree { lo: u16, hi: u16 },
}

/// Up to two masquerade port ranges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MasqPorts(pub [PortRange; 2]);

impl MasqPorts {
    /// 1024-65535 minus the ephemeral range `lo..=hi`.
    pub fn outside_ephemeral(lo: u16, hi: u16) -> Result<Self, MasqPortsError> {
        let below = (lo > 1024).then(|| PortRange {
            lo: 1024,
            hi: lo - 1,
        });
        let above = (hi < 65_535).then(|| PortRange {
            lo: hi.max(1023) + 1,
            hi: 65_535,
        });
        match (below, above) {
            (Some(a), Some(b)) => Ok(Self([a, b])),
            (Some(a), None) | (None, Some(a)) => Ok(Self([a, PortRange::default()])),
            (None, None) => Err(MasqPortsError::NoneFree { lo, hi }),
        }
    }

    /// Ports in the pool.
    pub fn len(&self) -> u32 {
        self.0.iter().map(PortRange::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The parts of the pool the host may also hand out as ephemeral
    /// ports: inside `lo..=hi` and not in a reserved range.
    pub fn ephemeral_overlap(&self, lo: u16, hi: u16, reserved: &[(u16, u16)]) -> Vec<PortRange> {
        let mut out: Vec<PortRange> = Vec::new();
        for r in self.0.iter().filter(|r| !r.is_empty()) {
            let (a, b) = (r.lo.max(lo), r.hi.min(hi));
            let mut start: Option<u16> = None;
            for p in a..=b.max(a) {
                let usable = p <= b && !reserved.iter().any(|(x, y)| (*x..=*y).contains(&p));
                match (usable, start) {
                    (true, None) => start = Some(p),
                    (false, Some(s)) => {
                        out.push(PortRange { lo: s, hi: p - 1 });
                        start = None;
                    }
                    _ => {}
                }
            }
            if let Some(s) = start {
                out.push(PortRange { lo: s, hi: b });
            }
        }
        out
    }

    /// The datapath's settings for this pool (the share left to the
    /// datapath's default: an eighth of the pool).
    pub fn config(&self) -> DatapathConfig {
        DatapathConfig {
            masq_ports: self.0,
            masq_share: 0,
            _pad: 0,
        }
    }
}

impl std::str::FromStr for MasqPorts {
    type Err = MasqPortsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || MasqPortsError::Syntax(s.to_owned());
        let ranges: Vec<PortRange> = s
            .split(',')
            .map(|part| {
                let (lo, hi) = part.trim().split_once('-').ok_or_else(syntax)?;
                let lo: u16 = lo.trim().parse().map_err(|_| syntax())?;
                let hi: u16 = hi.trim().parse().map_err(|_| syntax())?;
                if lo == 0 || lo > hi {
                    return Err(syntax());
                }
                Ok(PortRange { lo, hi })
            })
            .collect::<Result<_, _>>()?;
        match ranges.as_slice() {
            [a] => Ok(Self([*a, PortRange::default()])),
            [a, b] if a.hi < b.lo || b.hi < a.lo => Ok(Self([*a, *b])),
            [_, _] => Err(MasqPortsError::Overlap(s.to_owned())),
            _ => Err(syntax()),
        }
    }
}

impl fmt::Display for MasqPorts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .filter(|r| !r.is_empty())
            .map(|r| format!("{}-{}", r.lo, r.hi))
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(lo: u16, hi: u16) -> PortRange {
        PortRange { lo, hi }
    }

    #[test]
    fn the_default_pool_avoids_the_ephemeral_range() {
        let p = MasqPorts::outside_ephemeral(32768, 60999).unwrap();
        assert_eq!(p.0, [r(1024, 32767), r(61000, 65535)]);
        assert_eq!(p.len(), 36_280);
        assert!(p.ephemeral_overlap(32768, 60999, &[]).is_empty());
        let p = MasqPorts::outside_ephemeral(1024, 60999).unwrap();
        assert_eq!(p.0, [r(61000, 65535), PortRange::default()]);
        assert_eq!(
            MasqPorts::outside_ephemeral(1024, 65535),
            Err(MasqPortsError::NoneFree {
                lo: 1024,
                hi: 65535
            })
        );
        assert_eq!(p.to_string(), "61000-65535");
    }

    #[test]
    fn given_ranges_parse_and_their_ephemeral_overlap_is_exact() {
        let p: MasqPorts = "20000-40000, 61000-65535".parse().unwrap();
        assert_eq!(p.0, [r(20000, 40000), r(61000, 65535)]);
        assert_eq!(
            p.ephemeral_overlap(32768, 60999, &[(33000, 33999)]),
            vec![r(32768, 32999), r(34000, 40000)]
        );
        for bad in ["", "5", "9-1", "0-10", "1-70000", "1-2,3-4,5-6", "a-b"] {
            assert!(
                matches!(bad.parse::<MasqPorts>(), Err(MasqPortsError::Syntax(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            "1000-2000,1500-2500".parse::<MasqPorts>(),
            Err(MasqPortsError::Overlap(_))
        ));
    }
}
