//! Heap buffers aligned for O_DIRECT. The kernel rejects direct I/O whose buffer address,
//! length or file offset is not a multiple of the device's logical block size.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;

pub struct AlignedBuf {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: AlignedBuf owns its allocation exclusively, like Vec<u8>.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only hands out &[u8].
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// Allocates `len` zeroed bytes aligned to `align` (a power of two); None if `len` is 0
    /// or the allocation fails.
    pub fn zeroed(len: usize, align: usize) -> Option<Self> {
        if len == 0 {
            return None;
        }
        let layout = Layout::from_size_align(len, align).ok()?;
        // SAFETY: layout has non-zero size.
        let ptr = NonNull::new(unsafe { alloc_zeroed(layout) })?;
        Some(Self { ptr, layout })
    }

    pub fn len(&self) -> usize {
        self.layout.size()
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
        // SAFETY: ptr is valid for layout.size() initialised bytes.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.layout.size()) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and we hold &mut self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated with this exact layout in `zeroed`.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) }
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
