//! Batched map writes (`BPF_MAP_UPDATE_BATCH`, Linux 5.6), which aya does
//! not wrap: one system call for a slice of entries instead of one each.
//!
//! A bulk publication writes two entries per publication (its counter
//! slot's reset and the publication itself). Per entry, the system call's
//! entry, the attribute copy and the key and value allocations cost about
//! as much as the map update itself, so 50,000 publications spend half
//! their map time there; a batch pays them once.

use std::{
    io,
    mem::size_of,
    os::fd::{AsRawFd as _, BorrowedFd},
};

/// `union bpf_attr`'s `batch` member (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// `BPF_MAP_UPDATE_BATCH` from include/uapi/linux/bpf.h.
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

/// Entries per system call: bounds the kernel's time in one call (it
/// reschedules between entries, but a signal is only seen between calls)
/// and nothing else.
const CHUNK: usize = 8192;

/// A batch that stopped part way: the first `done` entries were written.
#[derive(Debug)]
pub struct Partial {
    pub done: usize,
    pub source: io::Error,
}

/// Writes `keys[i] -> values[i]` for every `i`, in order, inserting or
/// replacing (the kernel takes no `BPF_NOEXIST` in a batch: its
/// `elem_flags` allow `BPF_F_LOCK` only, and `EINVAL` answers the rest).
/// `values` holds one value per key
/// as the kernel lays it out: for a per-CPU map, one `V` per possible CPU
/// (`V`'s size a multiple of 8, as the kernel rounds it), so `values.len()`
/// is `keys.len()` times the CPUs.
///
/// On an error, the entries before the failing one are written (and the
/// error says how many): the kernel stops at the first failure.
pub fn update<K: Copy, V: Copy>(
    map: BorrowedFd<'_>,
    keys: &[K],
    values: &[V],
) -> Result<(), Partial> {
    if keys.is_empty() {
        return Ok(());
    }
    assert_eq!(
        values.len() % keys.len(),
        0,
        "a batch needs the same number of values for every key"
    );
    let per_key = values.len() / keys.len();
    let mut done = 0;
    for (keys, values) in keys.chunks(CHUNK).zip(values.chunks(CHUNK * per_key)) {
        let mut attr = BatchAttr {
            keys: keys.as_ptr() as u64,
            values: values.as_ptr() as u64,
            count: keys.len() as u32,
            map_fd: map.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: bpf(2) with an attribute the size of the `batch`
        // member; `keys` and `values` are live slices of `count` keys and
        // `count * per_key` values of the map's key and value sizes (the
        // caller's types are the map's), read by the kernel only; on
        // return the kernel writes `count` back into `attr`, which is ours.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_UPDATE_BATCH,
                &raw mut attr,
                size_of::<BatchAttr>() as libc::c_uint,
            )
        };
        if rc < 0 {
            let source = io::Error::last_os_error();
            // Once it has started writing, the kernel reports how many of
            // this chunk it wrote; a call refused before that leaves our
            // count as it was, so it is only believed when below it.
            let wrote = attr.count as usize;
            return Err(Partial {
                done: done + if wrote < keys.len() { wrote } else { 0 },
                source,
            });
        }
        done += keys.len();
    }
    Ok(())
}
