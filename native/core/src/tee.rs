//! Files that get the plain bytes of a sealed store's pieces as they land (`PieceStore::tee_plain`):
//! a sealed task's output, written while the task downloads from the bytes in hand before they
//! are sealed, rather than read back from the disk and opened once the download is done.
//!
//! What it cost was the copy into the page cache, the largest extra cost of a sealed child: on
//! this host 1 GiB of 4 MiB buffered writes took 0.8-2.2 s (dd), about 30 % of a sealed child's
//! CPU samples (perf), against 3 % each for sealing and for opening (AES-GCM on VAES). Writing
//! it from a copy on a thread of its own, off the piece's path, measured the same (ratio 0.743
//! both ways, dfget-p2p-encrypted-1g), so the write stays in line. The whole blocks of a piece
//! now go with O_DIRECT (`Out::write_at`): the same bench, alternating builds on a quiet host,
//! 0.448 and 0.467 buffered against 0.808, 0.719 and 0.706 direct (2026-12-08).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::aligned::BLOCK;

struct Tee {
    id: u64,
    out: Arc<Out>,
}

/// A tee's file and the pieces written to it so far.
struct Out {
    file: File,
    /// The same file opened again with O_DIRECT (None where the filesystem refuses it): the
    /// block-aligned part of each piece goes through it, the short tail of the last piece
    /// through `file`. Buffered, each fresh page-cache page cost this VM a hypervisor fault
    /// (about 3 µs, 0.8 s per GiB; see #19's notes) and made the sealed child's time bimodal.
    direct: Option<File>,
    pieces: Mutex<Vec<u32>>,
}

/// Opens `file` again, write-only with O_DIRECT, through /proc/self/fd.
fn reopen_direct(file: &File) -> Option<File> {
    let path = format!("/proc/self/fd/{}", file.as_raw_fd());
    OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(path).ok()
}

impl Out {
    /// Writes `plain` at `offset`: the whole blocks with O_DIRECT when the buffer and offset
    /// allow it, the rest (or all of it, when they do not or the direct write fails) buffered.
    fn write_at(&self, plain: &[u8], offset: u64) -> std::io::Result<()> {
        let aligned = (plain.as_ptr() as usize).is_multiple_of(BLOCK) && offset.is_multiple_of(BLOCK as u64);
        let head = match &self.direct {
            Some(d) if aligned => {
                let head = plain.len() / BLOCK * BLOCK;
                if head > 0 && d.write_all_at(&plain[..head], offset).is_err() {
                    0
                } else {
                    head
                }
            }
            _ => 0,
        };
        if head == plain.len() {
            return Ok(());
        }
        self.file.write_all_at(&plain[head..], offset + head as u64)
    }
}

/// The tees attached to one store.
#[derive(Default)]
pub(crate) struct Tees {
    list: Mutex<Vec<Tee>>,
    next: AtomicU64,
}

impl Tees {
    /// Attaches `file`; returns the id `detach` takes.
    pub fn attach(&self, file: File) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        if let Ok(mut list) = self.list.lock() {
            let direct = reopen_direct(&file);
            list.push(Tee { id, out: Arc::new(Out { file, direct, pieces: Mutex::new(Vec::new()) }) });
        }
        id
    }

    /// Detaches a tee; returns the pieces written to it (a write in flight may still finish,
    /// into the file, which its owner holds until it closes it).
    pub fn detach(&self, id: u64) -> Vec<u32> {
        let Ok(mut list) = self.list.lock() else { return Vec::new() };
        let Some(i) = list.iter().position(|t| t.id == id) else { return Vec::new() };
        let tee = list.swap_remove(i);
        let pieces = tee.out.pieces.lock().map(|p| p.clone()).unwrap_or_default();
        pieces
    }

    /// The tees attached now, for a piece about to be sealed (written off the lock).
    pub fn targets(&self) -> Targets {
        Targets(self.list.lock().map(|l| l.iter().map(|t| t.out.clone()).collect()).unwrap_or_default())
    }
}

pub(crate) struct Targets(Vec<Arc<Out>>);

impl Targets {
    /// Writes piece `n`'s plain bytes at `offset` of every tee; a tee that fails a write
    /// simply lacks the piece (its owner fills what is missing from the store).
    pub fn write(&self, n: u32, offset: u64, plain: &[u8]) {
        for out in &self.0 {
            if out.write_at(plain, offset).is_ok() {
                if let Ok(mut p) = out.pieces.lock() {
                    p.push(n);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aligned::AlignedBuf;

    #[test]
    fn aligned_blocks_go_direct_and_a_short_tail_buffered_with_every_byte_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).unwrap();
        let tees = Tees::default();
        let id = tees.attach(file);
        // Piece 0: three whole blocks; piece 1: one block and 100 bytes (the short last piece);
        // piece 2 comes from an unaligned slice (buffered all the way).
        let piece = 3 * BLOCK;
        let mut a = AlignedBuf::zeroed(piece, BLOCK).unwrap();
        a.as_mut_slice().iter_mut().enumerate().for_each(|(i, b)| *b = (i % 251) as u8);
        let mut b = AlignedBuf::zeroed(2 * BLOCK, BLOCK).unwrap();
        b.as_mut_slice().iter_mut().enumerate().for_each(|(i, x)| *x = (i % 13) as u8 + 1);
        let tail = &b.as_slice()[..BLOCK + 100];
        let unaligned = &a.as_slice()[1..BLOCK + 1];
        let targets = tees.targets();
        targets.write(1, piece as u64, tail);
        targets.write(0, 0, a.as_slice());
        targets.write(2, (piece + BLOCK + 100) as u64, unaligned);
        let mut got = tees.detach(id);
        got.sort();
        assert_eq!(got, vec![0, 1, 2]);
        let on_disk = std::fs::read(&path).unwrap();
        let mut want = a.as_slice().to_vec();
        want.extend_from_slice(tail);
        want.extend_from_slice(unaligned);
        assert_eq!(on_disk.len(), want.len(), "the file ends where the last piece does");
        assert!(on_disk == want, "every byte at its offset");
    }
}
