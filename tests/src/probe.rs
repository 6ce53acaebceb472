//! A second TCX program, attached after netagent's on an interface, that
//! counts every packet it sees and passes it on (TCX_NEXT). It proves that
//! netagent hands on what is not its own instead of ending the chain.
//!
//! Built from raw instructions with the `bpf(2)` syscall, so no test
//! program ships in netagent's object: eleven instructions, one array map.

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::Path,
};

const BPF_MAP_CREATE: i64 = 0;
const BPF_MAP_LOOKUP_ELEM: i64 = 1;
const BPF_PROG_LOAD: i64 = 5;
const BPF_OBJ_GET: i64 = 7;
const BPF_OBJ_GET_INFO_BY_FD: i64 = 15;
const BPF_LINK_CREATE: i64 = 28;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
/// Attach types.
pub const BPF_TCX_INGRESS: u32 = 46;
pub const BPF_TCX_EGRESS: u32 = 47;
const BPF_F_AFTER: u32 = 1 << 4;
const BPF_F_ID: u32 = 1 << 5;

/// One `union bpf_attr`, zeroed, written field by field.
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Self {
        Self([0; 128])
    }

    fn u32(mut self, off: usize, v: u32) -> Self {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }

    fn u64(mut self, off: usize, v: u64) -> Self {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }

    fn call(&mut self, cmd: i64) -> io::Result<i64> {
        // SAFETY: bpf(2) with a valid attr buffer of the size given.
        let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, self.0.as_mut_ptr(), self.0.len()) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(rc)
    }

    fn fd(&mut self, cmd: i64) -> io::Result<OwnedFd> {
        let fd = self.call(cmd)?;
        // SAFETY: the syscall returned a new descriptor we now own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }
}

/// `struct bpf_insn`: opcode, dst and src registers, offset, immediate.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = code;
    b[1] = (src << 4) | dst;
    b[2..4].copy_from_slice(&off.to_ne_bytes());
    b[4..8].copy_from_slice(&imm.to_ne_bytes());
    b
}

/// A loaded, attached counting probe; detached when dropped.
pub struct Probe {
    map: OwnedFd,
    _prog: OwnedFd,
    _link: OwnedFd,
}

impl Probe {
    /// Attaches a probe to `ifindex` (`attach_type`: [`BPF_TCX_INGRESS`]
    /// or [`BPF_TCX_EGRESS`]), right after the program of the link pinned
    /// at `after_link` (netagent's).
    pub fn attach_after(ifindex: u32, attach_type: u32, after_link: &Path) -> io::Result<Self> {
        let map = Attr::new()
            .u32(0, BPF_MAP_TYPE_ARRAY)
            .u32(4, 4)
            .u32(8, 8)
            .u32(12, 1)
            .fd(BPF_MAP_CREATE)?;
        let map_fd = map.as_raw_fd();
        let program: Vec<[u8; 8]> = vec![
            insn(0x62, 10, 0, -4, 0),    // *(u32 *)(r10 - 4) = 0
            insn(0xbf, 2, 10, 0, 0),     // r2 = r10
            insn(0x07, 2, 0, 0, -4),     // r2 += -4
            insn(0x18, 1, 1, 0, map_fd), // r1 = map (ld_imm64, pseudo map fd)
            insn(0x00, 0, 0, 0, 0),      //   (second half)
            insn(0x85, 0, 0, 0, 1),      // call bpf_map_lookup_elem
            insn(0x15, 0, 0, 2, 0),      // if r0 == 0 goto +2
            insn(0xb7, 1, 0, 0, 1),      // r1 = 1
            insn(0xdb, 0, 1, 0, 0),      // lock *(u64 *)(r0 + 0) += r1
            insn(0xb7, 0, 0, 0, -1),     // r0 = -1 (TCX_NEXT)
            insn(0x95, 0, 0, 0, 0),      // exit
        ];
        let code: Vec<u8> = program.concat();
        let license = CString::new("GPL").expect("license");
        let prog = Attr::new()
            .u32(0, BPF_PROG_TYPE_SCHED_CLS)
            .u32(4, program.len() as u32)
            .u64(8, code.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64)
            .fd(BPF_PROG_LOAD)?;
        let after = prog_id_of_link(after_link)?;
        let link = Attr::new()
            .u32(0, prog.as_raw_fd() as u32)
            .u32(4, ifindex)
            .u32(8, attach_type)
            .u32(12, BPF_F_AFTER | BPF_F_ID)
            .u32(16, after)
            .fd(BPF_LINK_CREATE)?;
        Ok(Self {
            map,
            _prog: prog,
            _link: link,
        })
    }

    /// Packets the probe has seen.
    pub fn count(&self) -> u64 {
        let key = 0u32;
        let mut value = 0u64;
        Attr::new()
            .u32(0, self.map.as_raw_fd() as u32)
            .u64(8, &raw const key as u64)
            .u64(16, &raw mut value as u64)
            .call(BPF_MAP_LOOKUP_ELEM)
            .expect("reading the probe's counter");
        value
    }
}

/// The id of the program a pinned link runs.
fn prog_id_of_link(pin: &Path) -> io::Result<u32> {
    let path = CString::new(pin.as_os_str().as_encoded_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let link = Attr::new().u64(0, path.as_ptr() as u64).fd(BPF_OBJ_GET)?;
    // struct bpf_link_info { type, id, prog_id, ... }
    let mut info = [0u8; 64];
    Attr::new()
        .u32(0, link.as_raw_fd() as u32)
        .u32(4, info.len() as u32)
        .u64(8, info.as_mut_ptr() as u64)
        .call(BPF_OBJ_GET_INFO_BY_FD)?;
    Ok(u32::from_ne_bytes(info[8..12].try_into().expect("4 bytes")))
}
