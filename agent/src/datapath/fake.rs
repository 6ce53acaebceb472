//! An in-memory [`Datapath`] for tests, with a settable capacity so "map
//! full" paths can be exercised.

use std::{collections::BTreeMap, net::Ipv4Addr};

use datapath_common::{Event, PubKey, PubStats, PubValue};

use super::{Datapath, DatapathError};

#[derive(Debug, Default)]
pub struct FakeDatapath {
    pub publications: BTreeMap<(u32, u16, u8), PubValue>,
    pub stats: BTreeMap<u32, PubStats>,
    pub local_addrs: Vec<(Ipv4Addr, u32)>,
    /// Maximum number of publications; `None` = unlimited.
    pub capacity: Option<usize>,
    /// When set, every write fails (simulates a broken kernel map).
    pub fail_writes: bool,
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
        Ok(Event::ALL.iter().map(|&e| (e, 0)).collect())
    }

    fn set_local_addrs(&mut self, addrs: &[(Ipv4Addr, u32)]) -> Result<(), DatapathError> {
        self.local_addrs = addrs.to_vec();
        Ok(())
    }
}
