//! In-memory datapaths for tests: one fake per narrow trait, with settable
//! capacities and injected failures, and [`FakeDatapath`], all of them.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use datapath_common::{
    DatapathConfig, EndpointAddr, EndpointIface, EndpointIface6, Event, LinkHole, OpenPort, PubKey,
    PubKey6, PubStats, PubValue, PubValue6,
};

use super::{
    DatapathError, EndpointMaps, EndpointPrograms, HostMaps, PublicationMaps, ServedInterfaces,
    SocketHooks, XdpAttachMode,
};

/// A sequence shared by the fakes, so a test can tell in which order the
/// host and the datapath were changed.
pub fn next_seq() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

fn injected() -> DatapathError {
    DatapathError::Other("injected write failure".into())
}

/// The publication map and counters.
#[derive(Debug, Default)]
pub struct FakePublications {
    pub entries: BTreeMap<(u32, u16, u8), PubValue>,
    pub stats: BTreeMap<u32, PubStats>,
    /// Maximum number of publications; `None` = unlimited.
    pub capacity: Option<usize>,
    /// When set, every write fails (a broken kernel map).
    pub fail_writes: bool,
    /// Counter slots; `None`: `MAX_PUBLICATIONS`.
    pub slots: Option<u32>,
}

fn k(key: &PubKey) -> (u32, u16, u8) {
    (key.addr_be, key.port_be, key.proto)
}

impl PublicationMaps for FakePublications {
    fn publications(&self) -> Result<Vec<(PubKey, PubValue)>, DatapathError> {
        Ok(self
            .entries
            .iter()
            .map(|(&(addr_be, port_be, proto), v)| {
                let key = PubKey {
                    addr_be,
                    port_be,
                    proto,
                    _pad: 0,
                };
                (key, *v)
            })
            .collect())
    }

    fn upsert_publication(&mut self, key: &PubKey, value: &PubValue) -> Result<(), DatapathError> {
        if self.fail_writes {
            return Err(injected());
        }
        let full = self.capacity.is_some_and(|cap| self.entries.len() >= cap);
        if full && !self.entries.contains_key(&k(key)) {
            return Err(DatapathError::Other("map full".into()));
        }
        self.entries.insert(k(key), *value);
        Ok(())
    }

    fn remove_publication(&mut self, key: &PubKey) -> Result<(), DatapathError> {
        if self.fail_writes {
            return Err(injected());
        }
        self.entries.remove(&k(key));
        Ok(())
    }

    fn insert_publications(&mut self, entries: &[(PubKey, PubValue)]) -> Result<(), DatapathError> {
        if self.fail_writes {
            return Err(injected());
        }
        if let Some((key, _)) = entries
            .iter()
            .find(|(key, _)| self.entries.contains_key(&k(key)))
        {
            return Err(DatapathError::Other(format!("publication {key:?} exists")));
        }
        if self
            .capacity
            .is_some_and(|cap| self.entries.len() + entries.len() > cap)
        {
            return Err(DatapathError::Other("map full".into()));
        }
        self.entries
            .extend(entries.iter().map(|(key, value)| (k(key), *value)));
        Ok(())
    }

    fn reset_stats(&mut self, slots: &[u32]) -> Result<(), DatapathError> {
        if let Some(slot) = slots.iter().find(|&&s| s >= self.stats_slots()) {
            return Err(DatapathError::Other(format!("no counter slot {slot}")));
        }
        self.stats
            .extend(slots.iter().map(|&slot| (slot, PubStats::default())));
        Ok(())
    }

    fn stats(&self, slot: u32) -> Result<PubStats, DatapathError> {
        if slot >= self.stats_slots() {
            return Err(DatapathError::Other(format!("no counter slot {slot}")));
        }
        Ok(self.stats.get(&slot).copied().unwrap_or_default())
    }

    fn stats_slots(&self) -> u32 {
        self.slots.unwrap_or(datapath_common::MAX_PUBLICATIONS)
    }

    fn events(&self) -> Result<Vec<(Event, u64)>, DatapathError> {
        Ok(Event::ALL
            .iter()
            .filter(|e| !e.is_retired())
            .map(|&e| (e, 0))
            .collect())
    }
}

/// The maps derived from the host and the settings.
#[derive(Debug, Default)]
pub struct FakeHostMaps {
    pub local_addrs: Vec<(IpAddr, u32)>,
    pub masq_addrs: Vec<(u32, std::net::IpAddr)>,
    pub publications6: Vec<(PubKey6, PubValue6)>,
    pub config: DatapathConfig,
    pub open_ports: BTreeSet<(u32, u16, u8)>,
    pub link_holes: BTreeSet<LinkHole>,
    pub fail_writes: bool,
}

impl HostMaps for FakeHostMaps {
    fn set_config(&mut self, config: &DatapathConfig) -> Result<(), DatapathError> {
        if self.fail_writes {
            return Err(injected());
        }
        self.config = *config;
        Ok(())
    }

    fn set_open_ports(&mut self, ports: &[OpenPort]) -> Result<(), DatapathError> {
        if self.fail_writes {
            return Err(injected());
        }
        self.open_ports = ports
            .iter()
            .map(|p| (p.addr_be, p.port_be, p.proto))
            .collect();
        Ok(())
    }

    fn set_link_holes(&mut self, holes: &[LinkHole]) -> Result<(), DatapathError> {
        if self.fail_writes {
            return Err(injected());
        }
        self.link_holes = holes.iter().copied().collect();
        Ok(())
    }

    fn set_local_addrs(&mut self, addrs: &[(IpAddr, u32)]) -> Result<(), DatapathError> {
        self.local_addrs = addrs.to_vec();
        Ok(())
    }

    fn set_masq_addrs(&mut self, addrs: &[(u32, std::net::IpAddr)]) -> Result<(), DatapathError> {
        self.masq_addrs = addrs.to_vec();
        Ok(())
    }

    fn set_publications6(&mut self, entries: &[(PubKey6, PubValue6)]) -> Result<(), DatapathError> {
        self.publications6 = entries.to_vec();
        Ok(())
    }
}

/// The endpoint maps and the endpoint program's links.
#[derive(Debug, Default)]
pub struct FakeEndpointSide {
    pub ifaces: BTreeMap<u32, EndpointIface>,
    pub addrs: BTreeMap<Ipv4Addr, EndpointAddr>,
    pub ifaces6: BTreeMap<u32, EndpointIface6>,
    pub addrs6: BTreeMap<Ipv6Addr, EndpointAddr>,
    /// Host-side interfaces with the isolation program attached.
    pub attached: BTreeSet<String>,
    /// Capacity of the interface map; `None` = unlimited.
    pub capacity: Option<usize>,
    pub fail_writes: bool,
    /// The order entries were removed in, with [`next_seq`].
    pub removals: Vec<(u64, String)>,
    /// Whether the resolver's loopback program "loaded" (else the
    /// resolver binds port 53 itself).
    pub resolver_program: bool,
    /// The resolver-port map: namespace cookie -> port.
    pub resolver_ports: BTreeMap<u64, u16>,
}

impl EndpointMaps for FakeEndpointSide {
    fn endpoint_ifaces(&self) -> Result<Vec<(u32, EndpointIface)>, DatapathError> {
        Ok(self.ifaces.iter().map(|(&k, &v)| (k, v)).collect())
    }

    fn set_endpoint_iface(
        &mut self,
        ifindex: u32,
        net: &EndpointIface,
    ) -> Result<(), DatapathError> {
        if self.fail_writes {
            return Err(injected());
        }
        let full = self.capacity.is_some_and(|cap| self.ifaces.len() >= cap);
        if full && !self.ifaces.contains_key(&ifindex) {
            return Err(DatapathError::Other("endpoint map full".into()));
        }
        self.ifaces.insert(ifindex, *net);
        Ok(())
    }

    fn remove_endpoint_iface(&mut self, ifindex: u32) -> Result<(), DatapathError> {
        self.removals.push((next_seq(), format!("iface {ifindex}")));
        self.ifaces.remove(&ifindex);
        Ok(())
    }

    fn endpoint_addrs(&self) -> Result<Vec<(Ipv4Addr, EndpointAddr)>, DatapathError> {
        Ok(self.addrs.iter().map(|(&k, &v)| (k, v)).collect())
    }

    fn set_endpoint_addr(
        &mut self,
        addr: Ipv4Addr,
        net: &EndpointAddr,
    ) -> Result<(), DatapathError> {
        if self.fail_writes {
            return Err(injected());
        }
        self.addrs.insert(addr, *net);
        Ok(())
    }

    fn remove_endpoint_addr(&mut self, addr: Ipv4Addr) -> Result<(), DatapathError> {
        self.removals.push((next_seq(), format!("addr {addr}")));
        self.addrs.remove(&addr);
        Ok(())
    }

    fn endpoint_ifaces6(&self) -> Result<Vec<u32>, DatapathError> {
        Ok(self.ifaces6.keys().copied().collect())
    }

    fn set_endpoint_iface6(
        &mut self,
        ifindex: u32,
        iface: &EndpointIface6,
    ) -> Result<(), DatapathError> {
        if self.fail_writes {
            return Err(injected());
        }
        self.ifaces6.insert(ifindex, *iface);
        Ok(())
    }

    fn remove_endpoint_iface6(&mut self, ifindex: u32) -> Result<(), DatapathError> {
        self.removals
            .push((next_seq(), format!("iface6 {ifindex}")));
        self.ifaces6.remove(&ifindex);
        Ok(())
    }

    fn endpoint_addrs6(&self) -> Result<Vec<Ipv6Addr>, DatapathError> {
        Ok(self.addrs6.keys().copied().collect())
    }

    fn set_endpoint_addr6(
        &mut self,
        addr: Ipv6Addr,
        endpoint: &EndpointAddr,
    ) -> Result<(), DatapathError> {
        if self.fail_writes {
            return Err(injected());
        }
        self.addrs6.insert(addr, *endpoint);
        Ok(())
    }

    fn remove_endpoint_addr6(&mut self, addr: Ipv6Addr) -> Result<(), DatapathError> {
        self.removals.push((next_seq(), format!("addr {addr}")));
        self.addrs6.remove(&addr);
        Ok(())
    }
}

impl EndpointPrograms for FakeEndpointSide {
    fn attach_endpoint(&mut self, host_ifname: &str) -> Result<(), DatapathError> {
        if self.fail_writes {
            return Err(injected());
        }
        self.attached.insert(host_ifname.to_owned());
        Ok(())
    }

    fn resolver_program(&self) -> Option<std::os::fd::OwnedFd> {
        // Any descriptor stands for the program (the fake host keeps it
        // as the "link").
        self.resolver_program
            .then(|| std::fs::File::open("/dev/null").ok().map(Into::into))
            .flatten()
    }

    fn set_resolver_ports(&mut self, ports: &[(u64, u16)]) -> Result<(), DatapathError> {
        if self.fail_writes {
            return Err(injected());
        }
        self.resolver_ports = ports.iter().copied().collect();
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

/// The programs on served interfaces.
#[derive(Debug, Default)]
pub struct FakeServed {
    pub served: BTreeMap<String, XdpAttachMode>,
    /// Interfaces attaching to fails on (no such device, say).
    pub fail: BTreeSet<String>,
}

impl ServedInterfaces for FakeServed {
    fn serve(&mut self, iface: &str, mode: XdpAttachMode) -> Result<(), DatapathError> {
        if self.fail.contains(iface) {
            return Err(DatapathError::Other(format!("no such interface {iface}")));
        }
        self.served.insert(iface.to_owned(), mode);
        Ok(())
    }

    fn served(&self) -> Result<Vec<String>, DatapathError> {
        Ok(self.served.keys().cloned().collect())
    }

    fn unserve(&mut self, iface: &str) -> Result<(), DatapathError> {
        self.served.remove(iface);
        Ok(())
    }
}

/// Every fake at once: a whole [`super::Datapath`].
#[derive(Debug, Default)]
pub struct FakeDatapath {
    pub pubs: FakePublications,
    pub host_maps: FakeHostMaps,
    pub endpoints: FakeEndpointSide,
    pub served: FakeServed,
    pub sock_hooks: FakeSocketHooks,
}

/// The cgroup the socket hooks are attached to.
#[derive(Debug, Default)]
pub struct FakeSocketHooks {
    pub cgroup: Option<PathBuf>,
}

impl SocketHooks for FakeSocketHooks {
    fn attach_socket_hooks(&mut self, cgroup: &Path) -> Result<(), DatapathError> {
        if !cgroup.is_dir() {
            return Err(DatapathError::Other(format!(
                "no cgroup {}",
                cgroup.display()
            )));
        }
        self.cgroup = Some(cgroup.to_path_buf());
        Ok(())
    }

    fn detach_socket_hooks(&mut self) -> Result<(), DatapathError> {
        self.cgroup = None;
        Ok(())
    }

    fn socket_hooks_cgroup(&self) -> Option<PathBuf> {
        self.cgroup.clone()
    }
}

impl FakeDatapath {
    /// Makes every map write fail (or succeed again).
    pub fn fail_writes(&mut self, fail: bool) {
        self.pubs.fail_writes = fail;
        self.host_maps.fail_writes = fail;
        self.endpoints.fail_writes = fail;
    }
}

/// Forwards each trait method to the field that fakes it.
macro_rules! forward {
    ($field:ident: $($sig:tt)*) => { forward!(@each $field; $($sig)*); };
    (@each $field:ident; fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty; $($rest:tt)*) => {
        fn $name(&self $(, $arg: $ty)*) -> $ret { self.$field.$name($($arg),*) }
        forward!(@each $field; $($rest)*);
    };
    (@each $field:ident; fn $name:ident(&mut self $(, $arg:ident: $ty:ty)*) -> $ret:ty; $($rest:tt)*) => {
        fn $name(&mut self $(, $arg: $ty)*) -> $ret { self.$field.$name($($arg),*) }
        forward!(@each $field; $($rest)*);
    };
    (@each $field:ident;) => {};
}

type R<T> = Result<T, DatapathError>;

impl PublicationMaps for FakeDatapath {
    forward!(pubs:
        fn publications(&self) -> R<Vec<(PubKey, PubValue)>>;
        fn upsert_publication(&mut self, key: &PubKey, value: &PubValue) -> R<()>;
        fn remove_publication(&mut self, key: &PubKey) -> R<()>;
        fn insert_publications(&mut self, entries: &[(PubKey, PubValue)]) -> R<()>;
        fn reset_stats(&mut self, slots: &[u32]) -> R<()>;
        fn stats(&self, slot: u32) -> R<PubStats>;
        fn stats_slots(&self) -> u32;
        fn events(&self) -> R<Vec<(Event, u64)>>;
    );
}

impl HostMaps for FakeDatapath {
    forward!(host_maps:
        fn set_config(&mut self, config: &DatapathConfig) -> R<()>;
        fn set_open_ports(&mut self, ports: &[OpenPort]) -> R<()>;
        fn set_link_holes(&mut self, holes: &[LinkHole]) -> R<()>;
        fn set_local_addrs(&mut self, addrs: &[(IpAddr, u32)]) -> R<()>;
        fn set_masq_addrs(&mut self, addrs: &[(u32, std::net::IpAddr)]) -> R<()>;
        fn set_publications6(&mut self, entries: &[(PubKey6, PubValue6)]) -> R<()>;
    );
}

impl EndpointMaps for FakeDatapath {
    forward!(endpoints:
        fn endpoint_ifaces(&self) -> R<Vec<(u32, EndpointIface)>>;
        fn set_endpoint_iface(&mut self, ifindex: u32, iface: &EndpointIface) -> R<()>;
        fn remove_endpoint_iface(&mut self, ifindex: u32) -> R<()>;
        fn endpoint_addrs(&self) -> R<Vec<(Ipv4Addr, EndpointAddr)>>;
        fn set_endpoint_addr(&mut self, addr: Ipv4Addr, endpoint: &EndpointAddr) -> R<()>;
        fn remove_endpoint_addr(&mut self, addr: Ipv4Addr) -> R<()>;
        fn endpoint_ifaces6(&self) -> R<Vec<u32>>;
        fn set_endpoint_iface6(&mut self, ifindex: u32, iface: &EndpointIface6) -> R<()>;
        fn remove_endpoint_iface6(&mut self, ifindex: u32) -> R<()>;
        fn endpoint_addrs6(&self) -> R<Vec<Ipv6Addr>>;
        fn set_endpoint_addr6(&mut self, addr: Ipv6Addr, endpoint: &EndpointAddr) -> R<()>;
        fn remove_endpoint_addr6(&mut self, addr: Ipv6Addr) -> R<()>;
    );
}

impl EndpointPrograms for FakeDatapath {
    forward!(endpoints:
        fn attach_endpoint(&mut self, host_ifname: &str) -> R<()>;
        fn resolver_program(&self) -> Option<std::os::fd::OwnedFd>;
        fn set_resolver_ports(&mut self, ports: &[(u64, u16)]) -> R<()>;
        fn detach_endpoint(&mut self, host_ifname: &str) -> R<()>;
        fn attached_endpoints(&self) -> R<Vec<String>>;
    );
}

impl SocketHooks for FakeDatapath {
    forward!(sock_hooks:
        fn attach_socket_hooks(&mut self, cgroup: &Path) -> R<()>;
        fn detach_socket_hooks(&mut self) -> R<()>;
        fn socket_hooks_cgroup(&self) -> Option<PathBuf>;
    );
}

impl ServedInterfaces for FakeDatapath {
    forward!(served:
        fn serve(&mut self, iface: &str, mode: XdpAttachMode) -> R<()>;
        fn served(&self) -> R<Vec<String>>;
        fn unserve(&mut self, iface: &str) -> R<()>;
    );
}
