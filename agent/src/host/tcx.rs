//! Attaching a program at TCX egress of an interface of the calling
//! thread's namespace, by raw `BPF_LINK_CREATE`: aya attaches by name from
//! the program object, which lives on the daemon's thread, while a
//! container's loopback is reached only from a thread inside its
//! namespace (its netlink worker). The program travels there as a
//! duplicated descriptor; the link is returned as one, and detaches when
//! the last copy closes.

use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
};

/// `enum bpf_cmd`: BPF_LINK_CREATE.
const BPF_LINK_CREATE: libc::c_long = 28;
/// `enum bpf_attach_type`: BPF_TCX_EGRESS.
const BPF_TCX_EGRESS: u32 = 47;

/// A TCX egress link of `program` on the interface `ifindex` of this
/// thread's namespace, after any other program there.
pub fn attach_egress(program: BorrowedFd<'_>, ifindex: u32) -> io::Result<OwnedFd> {
    // `union bpf_attr`'s `link_create`: prog_fd, target_ifindex,
    // attach_type, flags, then the TCX part (relative fd or id, expected
    // revision) left zero: appended last, no revision check. The kernel
    // wants every byte it does not read to be zero.
    let mut attr = [0u32; 16];
    attr[0] = u32::try_from(program.as_raw_fd()).map_err(|_| io::ErrorKind::InvalidInput)?;
    attr[1] = ifindex;
    attr[2] = BPF_TCX_EGRESS;
    // SAFETY: a bpf(2) call with an attribute buffer we own, of the size
    // we pass.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_CREATE,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::ErrorKind::InvalidData)?;
    // SAFETY: the kernel just gave us this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
