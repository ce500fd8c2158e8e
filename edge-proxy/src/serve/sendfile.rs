//! Response bodies sent from a disk-tier file with `sendfile(2)`: the body
//! goes from the page cache to the socket without being copied through
//! process memory, as nginx serves static files. HTTP/1 without TLS only
//! (TLS must encrypt what it sends; HTTP/2 frames bodies itself).
//!
//! pingora writes response bodies from memory. To keep its HTTP/1 state
//! (content length, keep-alive, pipelining) exactly as for any other body,
//! the body handed to it is a slice of a zeroed buffer, a stand-in as long as
//! the body, and the connection ([`super::conn::TrackedStream`]) sends the
//! file's bytes in its place when pingora writes it. The stand-in is never
//! read and never sent: a write from it with no file armed, or out of step
//! with the file, fails, and the connection ends.
//!
//! The only unsafe code in the crate: the system calls below, on
//! descriptors that are open for the length of each call.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

/// The largest body sent from a file (larger ones are sent as before).
pub const FILE_BODY_MAX: usize = 64 << 20;

/// The stand-in for bodies sent from files (see the module docs): one
/// zeroed allocation, made once and never freed. Its pages are never
/// touched (nothing reads it), so it costs address space, not memory; a
/// `static` array would have put 64 MiB of zeros into the binary.
fn file_body() -> &'static [u8] {
    static FILE_BODY: OnceLock<&'static [u8]> = OnceLock::new();
    FILE_BODY.get_or_init(|| Box::leak(vec![0u8; FILE_BODY_MAX].into_boxed_slice()))
}

/// The stand-in body of `len` bytes to hand pingora (`len` ≤ [`FILE_BODY_MAX`]).
pub(crate) fn stand_in(len: usize) -> Bytes {
    Bytes::from_static(&file_body()[..len])
}

/// Where `buf` starts in the stand-in, if it is part of it.
pub(crate) fn stand_in_offset(buf: &[u8]) -> Option<usize> {
    let start = file_body().as_ptr() as usize;
    let at = buf.as_ptr() as usize;
    (at >= start && at < start + FILE_BODY_MAX).then(|| at - start)
}

/// A body being sent from a file: `len` bytes from offset `next - sent`.
pub(crate) struct FileBody {
    file: Arc<File>,
    /// File offset of the next byte to send.
    next: u64,
    /// Body bytes sent so far (pingora's position in the stand-in).
    sent: usize,
    len: usize,
}

impl FileBody {
    pub(crate) fn new(file: Arc<File>, offset: u64, len: usize) -> FileBody {
        FileBody { file, next: offset, sent: 0, len }
    }

    /// Whether a write of the stand-in at `offset` continues this body.
    pub(crate) fn in_step(&self, offset: usize) -> bool {
        offset == self.sent && self.sent < self.len
    }

    pub(crate) fn done(&self) -> bool {
        self.sent == self.len
    }

    /// Send up to `want` body bytes on socket `fd`. `WouldBlock` when the
    /// socket has no room.
    pub(crate) fn send(&mut self, fd: RawFd, want: usize) -> io::Result<usize> {
        let want = want.min(self.len - self.sent);
        let n = loop {
            let mut offset = libc::off_t::try_from(self.next).map_err(io::Error::other)?;
            // SAFETY: both descriptors are open for the call (the socket by
            // the connection, the file by `self.file`); `offset` is a valid
            // pointer.
            let n = unsafe { libc::sendfile(fd, self.file.as_raw_fd(), &mut offset, want) };
            if n >= 0 {
                break n;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        };
        if n == 0 && want > 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "disk-tier file shorter than its body"));
        }
        self.advance(n as usize);
        Ok(n as usize)
    }

    /// Read up to `buf.len()` of the next body bytes into `buf` (for a
    /// socket without room: they go through the connection's own writer,
    /// which waits for room). The bytes count as sent only once
    /// [`advance`](Self::advance) says so.
    pub(crate) fn read_next(&self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.len - self.sent);
        self.file.read_exact_at(&mut buf[..n], self.next)?;
        Ok(n)
    }

    pub(crate) fn advance(&mut self, n: usize) {
        self.next += n as u64;
        self.sent += n;
    }
}

/// `send(2)` of `buf` on socket `fd` with `MSG_MORE`: a response head, so
/// that it leaves in one segment with the body that follows.
pub(crate) fn send_more(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for `buf.len()` bytes; `fd` is open.
        let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_MORE | libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Whether `fd` is a socket (files are only sent to sockets).
pub(crate) fn is_socket(fd: RawFd) -> bool {
    if fd < 0 {
        return false;
    }
    // SAFETY: `stat` is plain data, filled by fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer.
    unsafe { libc::fstat(fd, &mut st) == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFSOCK }
}

/// Set socket `fd`'s send and receive buffers (tests: small ones fill up).
#[cfg(test)]
pub(crate) fn set_buffers(fd: RawFd, bytes: libc::c_int) -> io::Result<()> {
    set_buffer(fd, libc::SO_SNDBUF, bytes)?;
    set_buffer(fd, libc::SO_RCVBUF, bytes)
}

/// Segments the TCP socket `fd` has sent, and its current send MSS:
/// `tcpi_segs_out` (byte 136 of Linux's `struct tcp_info`, past the end of
/// libc's struct) and `tcpi_snd_mss` (byte 16).
#[cfg(test)]
pub(crate) fn segments_sent(fd: RawFd) -> (u32, u32) {
    let mut info = [0u8; 256];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: `fd` is an open TCP socket; the buffer holds `len` bytes.
    let r = unsafe { libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, info.as_mut_ptr().cast(), &mut len) };
    assert_eq!(r, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    assert!(len >= 140, "this kernel's tcp_info has no tcpi_segs_out");
    let u32_at = |at: usize| u32::from_ne_bytes(info[at..at + 4].try_into().unwrap());
    (u32_at(136), u32_at(16))
}

#[cfg(test)]
fn set_buffer(fd: RawFd, option: libc::c_int, bytes: libc::c_int) -> io::Result<()> {
    // SAFETY: `fd` is open; the option value is a c_int of the given size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stand_in_slices_are_recognised_and_others_are_not() {
        let b = stand_in(100);
        assert_eq!(stand_in_offset(&b), Some(0));
        assert_eq!(stand_in_offset(&b[40..]), Some(40));
        assert_eq!(stand_in_offset(&[0u8; 100]), None);
        assert_eq!(stand_in_offset(b"abc"), None);
    }

    #[test]
    fn only_sockets_are_sockets() {
        let f = tempfile::tempfile().unwrap();
        assert!(!is_socket(f.as_raw_fd()));
        assert!(!is_socket(-1));
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(is_socket(l.as_raw_fd()));
    }
}
