//! Heap buffers aligned for O_DIRECT. The kernel rejects direct I/O whose buffer address,
//! length or file offset is not a multiple of the device's logical block size.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;

/// Transparent huge page size on x86-64 and most arm64 kernels.
const HUGE_PAGE: usize = 2 << 20;

pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    backing: Backing,
}

enum Backing {
    Heap(Layout),
    /// Anonymous mapping of this many bytes starting at `ptr`.
    Map(usize),
}

// SAFETY: AlignedBuf owns its allocation exclusively, like Vec<u8>.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only hands out &[u8].
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// Allocates `len` zeroed bytes aligned to `align` (a power of two); None if `len` is 0
    /// or the allocation fails. Buffers of a huge page or more are mapped on huge-page
    /// boundaries with MADV_HUGEPAGE: then a 4 MiB piece is two physically contiguous 2 MiB
    /// segments instead of 1024 scattered pages, so an O_DIRECT write of it reaches the device
    /// as one request instead of being split at the queue's segment limit (254 segments, i.e.
    /// ~1 MiB of 4 KiB pages on virtio-blk), and the kernel pins 2 pages instead of 1024.
    pub fn zeroed(len: usize, align: usize) -> Option<Self> {
        if len == 0 {
            return None;
        }
        if len >= HUGE_PAGE && align <= HUGE_PAGE && align.is_power_of_two() {
            if let Some(b) = Self::mapped(len) {
                return Some(b);
            }
        }
        let layout = Layout::from_size_align(len, align).ok()?;
        // SAFETY: layout has non-zero size.
        let ptr = NonNull::new(unsafe { alloc_zeroed(layout) })?;
        Some(Self { ptr, len, backing: Backing::Heap(layout) })
    }

    fn mapped(len: usize) -> Option<Self> {
        let map_len = len.div_ceil(HUGE_PAGE) * HUGE_PAGE;
        let over = map_len + HUGE_PAGE;
        // SAFETY: a fresh private anonymous mapping; no existing memory is touched.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                over,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return None;
        }
        let start = raw as usize;
        let aligned = start.next_multiple_of(HUGE_PAGE);
        let head = aligned - start;
        let tail = over - head - map_len;
        // SAFETY: both ranges lie inside the mapping just created and are not used afterwards.
        unsafe {
            if head > 0 {
                libc::munmap(raw, head);
            }
            if tail > 0 {
                libc::munmap((aligned + map_len) as *mut libc::c_void, tail);
            }
            // Advisory: without THP the buffer simply stays on small pages.
            libc::madvise(aligned as *mut libc::c_void, map_len, libc::MADV_HUGEPAGE);
        }
        Some(Self { ptr: NonNull::new(aligned as *mut u8)?, len, backing: Backing::Map(map_len) })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr is valid for len initialised (zeroed at allocation) bytes.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and we hold &mut self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        match self.backing {
            // SAFETY: allocated with this exact layout in `zeroed`.
            Backing::Heap(layout) => unsafe { dealloc(self.ptr.as_ptr(), layout) },
            // SAFETY: the mapping `mapped` left at ptr, exactly map_len bytes.
            Backing::Map(map_len) => unsafe {
                libc::munmap(self.ptr.as_ptr().cast(), map_len);
            },
        }
    }
}

/// Alignment used for every piece buffer: enough for any logical block size in practice
/// and for page-granular mmap/sendfile.
pub const BLOCK: usize = 4096;

/// Rounds `n` up to a multiple of `BLOCK`.
pub fn round_up(n: usize) -> usize {
    n.div_ceil(BLOCK) * BLOCK
}

/// Recycles piece-sized aligned buffers. A fresh multi-MiB allocation comes back from the
/// kernel as unmapped pages, and faulting them in on every piece costs about as much as the
/// copy itself; reusing buffers keeps the write path at memory speed.
pub struct BufPool {
    free: std::sync::Mutex<Vec<AlignedBuf>>,
    max_bytes: usize,
}

impl BufPool {
    pub const fn new(max_bytes: usize) -> Self {
        Self { free: std::sync::Mutex::new(Vec::new()), max_bytes }
    }

    /// A buffer of at least `len` bytes (capacity rounded up to `BLOCK`); its contents are
    /// whatever the last user left.
    pub fn get(&'static self, len: usize) -> Option<PooledBuf> {
        let cap = round_up(len.max(1));
        let reused = self.free.lock().ok().and_then(|mut free| {
            let i = free.iter().position(|b| b.len() == cap)?;
            Some(free.swap_remove(i))
        });
        let buf = match reused {
            Some(b) => b,
            None => AlignedBuf::zeroed(cap, BLOCK)?,
        };
        Some(PooledBuf { buf: Some(buf), len, pool: self })
    }

    fn put(&self, buf: AlignedBuf) {
        if let Ok(mut free) = self.free.lock() {
            let held: usize = free.iter().map(AlignedBuf::len).sum();
            if held + buf.len() <= self.max_bytes {
                free.push(buf);
            }
        }
    }
}

/// Process-wide pool for piece buffers (bounded so an idle daemon gives memory back).
pub static PIECE_POOL: BufPool = BufPool::new(256 << 20);

/// An aligned buffer on loan from a pool; `len` is the meaningful prefix.
pub struct PooledBuf {
    buf: Option<AlignedBuf>,
    len: usize,
    pool: &'static BufPool,
}

impl PooledBuf {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Capacity (a multiple of `BLOCK`).
    pub fn capacity(&self) -> usize {
        self.buf.as_ref().map_or(0, AlignedBuf::len)
    }

    pub fn as_slice(&self) -> &[u8] {
        match &self.buf {
            Some(b) => &b.as_slice()[..self.len],
            None => &[],
        }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let len = self.len;
        match &mut self.buf {
            Some(b) => &mut b.as_mut_slice()[..len],
            None => &mut [],
        }
    }

    /// The whole aligned capacity (read-only), for O_DIRECT writes that cover full blocks.
    pub fn as_slice_full(&self) -> &[u8] {
        match &self.buf {
            Some(b) => b.as_slice(),
            None => &[],
        }
    }

    /// The whole aligned capacity, for O_DIRECT transfers that must cover full blocks.
    pub fn full_mut(&mut self) -> &mut [u8] {
        match &mut self.buf {
            Some(b) => b.as_mut_slice(),
            None => &mut [],
        }
    }

    pub fn as_ptr(&self) -> *const u8 {
        self.buf.as_ref().map_or(std::ptr::null(), AlignedBuf::as_ptr)
    }

    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.buf.as_mut().map_or(std::ptr::null_mut(), AlignedBuf::as_mut_ptr)
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            self.pool.put(b);
        }
    }
}

/// A placeholder with no allocation (returned when an operation failed before owning one).
pub fn empty_buf() -> PooledBuf {
    PooledBuf { buf: None, len: 0, pool: &PIECE_POOL }
}

impl PooledBuf {
    /// Sets the meaningful prefix, clamped to the capacity.
    pub fn set_len(&mut self, len: usize) {
        self.len = len.min(self.capacity());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_huge_page_buffers_are_zeroed_aligned_and_writable() {
        for (len, align) in [(4096, 4096), (10_000, 4096), (HUGE_PAGE, 4096), (4 << 20, 4096), ((4 << 20) + 4096, 512)]
        {
            let mut b = AlignedBuf::zeroed(len, align).unwrap();
            assert_eq!(b.len(), len);
            assert!((b.as_ptr() as usize).is_multiple_of(align));
            if len >= HUGE_PAGE {
                assert!((b.as_ptr() as usize).is_multiple_of(HUGE_PAGE), "piece buffers start on a huge page");
            }
            assert!(b.as_slice().iter().all(|&x| x == 0));
            b.as_mut_slice()[len - 1] = 7;
            assert_eq!(b.as_slice()[len - 1], 7);
        }
        assert!(AlignedBuf::zeroed(0, 4096).is_none());
        // Pooled huge buffers come back for the same capacity.
        static POOL: BufPool = BufPool::new(16 << 20);
        let p = POOL.get(4 << 20).unwrap();
        let addr = p.as_ptr();
        drop(p);
        assert_eq!(POOL.get(4 << 20).unwrap().as_ptr(), addr);
    }
}
