//! An in-memory [`Datapath`] for tests, with a settable capacity so "map
//! full" paths can be exercised.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use datapath_common::{
    DatapathConfig, EndpointAddr, EndpointIface, Event, OpenPort, PubKey, PubStats, PubValue,
};

use super::{Datapath, DatapathError};

/// A sequence shared by the fakes, so a test can tell in which order the
/// host and the datapath were changed.
pub fn next_seq() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

#[derive(Debug, Default)]
pub struct FakeDatapath {
    pub publications: BTreeMap<(u32, u16, u8), PubValue>,
    pub stats: BTreeMap<u32, PubStats>,
    pub local_addrs: Vec<(Ipv4Addr, u32)>,
    pub masq_addrs: Vec<(u32, Ipv4Addr)>,
    pub endpoint_ifaces: BTreeMap<u32, EndpointIface>,
    pub endpoint_addrs: BTreeMap<Ipv4Addr, EndpointAddr>,
    /// Host-side interfaces with the isolation program attached.
    pub attached: BTreeSet<String>,
    pub config: DatapathConfig,
    pub open_ports: BTreeSet<(u32, u16, u8)>,
    /// Maximum number of publications; `None` = unlimited.
    pub capacity: Option<usize>,
    /// When set, every write fails (simulates a broken kernel map).
    pub fail_writes: bool,
    /// Capacity of the endpoint maps; `None` = unlimited.
    pub endpoint_capacity: Option<usize>,
    /// The order endpoint entries were removed in, with [`next_seq`].
    pub removals: Vec<(u64, String)>,
}

fn k(key: &PubKey) -> (u32, u16, u8) {
    (key.addr_be, key.port_be, key.proto)
}

impl Datapath for FakeDatapath {
    fn publications(&self) -> Result<Vec<(PubKey, PubValue)>, DatapathError> {
        Ok(self
            .publications
            .iter()
            .map(|(&(addr_be, port_be, proto), v)| {
                (
                    PubKey {
                        addr_be,
                        port_be,
                        proto,
                        _pad: 0,
                    },
                    *v,
                )
            })
            .collect())
    }

    fn upsert_publication(&mut self, key: &PubKey, value: &PubValue) -> Result<(), DatapathError> {
        if self.fail_writes {
            return Err(DatapathError::Other("injected write failure".into()));
        }
        let full = self
            .capacity
            .is_some_and(|cap| self.publications.len() >= cap);
        if full && !self.publications.contains_key(&k(key)) {
            return Err(DatapathError::Other("map full".into()));
        }
        self.publications.insert(k(key), *value);
        Ok(())
    }

    fn remove_publication(&mut self, key: &PubKey) -> Result<(), DatapathError> {
        if self.fail_writes {
            return Err(DatapathError::Other("injected write failure".into()));
        }
        self.publications.remove(&k(key));
        Ok(())
    }

    fn reset_stats(&mut self, slot: u32) -> Result<(), DatapathError> {
        self.stats.insert(slot, PubStats::default());
        Ok(())
    }

    fn stats(&self, slot: u32) -> Result<PubStats, DatapathError> {
        Ok(self.stats.get(&slot).copied().unwrap_or_default())
    }

    fn events(&self) -> Result<Vec<(Event, u64)>, DatapathError> {
        Ok(Event::ALL
            .iter()
            .filter(|e| !e.is_retired())
            .map(|&e| (e, 0))
            .collect())
    }

    fn set_config(&mut self, config: &DatapathConfig) -> Result<(), DatapathError> {
        self.check_writes()?;
        self.config = *config;
        Ok(())
    }

    fn set_open_ports(&mut self, ports: &[OpenPort]) -> Result<(), DatapathError> {
        self.check_writes()?;
        self.open_ports = ports
            .iter()
            .map(|p| (p.addr_be, p.port_be, p.proto))
            .collect();
        Ok(())
    }

    fn set_local_addrs(&mut self, addrs: &[(Ipv4Addr, u32)]) -> Result<(), DatapathError> {
        self.local_addrs = addrs.to_vec();
        Ok(())
    }

    fn set_masq_addrs(&mut self, addrs: &[(u32, Ipv4Addr)]) -> Result<(), DatapathError> {
        self.masq_addrs = addrs.to_vec();
        Ok(())
    }

    fn endpoint_ifaces(&self) -> Result<Vec<(u32, EndpointIface)>, DatapathError> {
        Ok(self.endpoint_ifaces.iter().map(|(&k, &v)| (k, v)).collect())
    }

    fn set_endpoint_iface(
        &mut self,
        ifindex: u32,
        net: &EndpointIface,
    ) -> Result<(), DatapathError> {
        self.check_writes()?;
        let full = self
            .endpoint_capacity
            .is_some_and(|cap| self.endpoint_ifaces.len() >= cap);
        if full && !self.endpoint_ifaces.contains_key(&ifindex) {
            return Err(DatapathError::Other("endpoint map full".into()));
        }
        self.endpoint_ifaces.insert(ifindex, *net);
        Ok(())
    }

    fn remove_endpoint_iface(&mut self, ifindex: u32) -> Result<(), DatapathError> {
        self.removals.push((next_seq(), format!("iface {ifindex}")));
        self.endpoint_ifaces.remove(&ifindex);
        Ok(())
    }

    fn endpoint_addrs(&self) -> Result<Vec<(Ipv4Addr, EndpointAddr)>, DatapathError> {
        Ok(self.endpoint_addrs.iter().map(|(&k, &v)| (k, v)).collect())
    }

    fn set_endpoint_addr(
        &mut self,
        addr: Ipv4Addr,
        net: &EndpointAddr,
    ) -> Result<(), DatapathError> {
        self.check_writes()?;
        self.endpoint_addrs.insert(addr, *net);
        Ok(())
    }

    fn remove_endpoint_addr(&mut self, addr: Ipv4Addr) -> Result<(), DatapathError> {
        self.removals.push((next_seq(), format!("addr {addr}")));
        self.endpoint_addrs.remove(&addr);
        Ok(())
    }

    fn attach_endpoint(&mut self, host_ifname: &str) -> Result<(), DatapathError> {
        self.check_writes()?;
        self.attached.insert(host_ifname.to_owned());
        Ok(())
    }

    fn detach_endpoint(&mut self, host_ifname: &str) -> Result<(), DatapathError> {
        self.attached.remove(host_ifname);
        Ok(())
    }

    fn attached_endpoints(&self) -> Result<Vec<String>, DatapathError> {
        Ok(self.attached.iter().cloned().collect())
    }
}

impl FakeDatapath {
    fn check_writes(&self) -> Result<(), DatapathError> {
        if self.fail_writes {
            return Err(DatapathError::Other("injected write failure".into()));
        }
        Ok(())
    }
}
