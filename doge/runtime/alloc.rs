//! A global allocator that keeps freed large blocks for reuse.
//!
//! A training step allocates and frees the same large tensors every step (gradients of the 32 MB
//! embedding, the lm_head blocks, activations). glibc hands blocks above its mmap threshold (at
//! most 32 MB) straight back to the kernel, so each step faulted every page in again: perf showed
//! 10-13% of a Doge-20M step in page faults and kernel page clearing. Here freed blocks of at least
//! `MIN_CACHED` bytes are kept (up to `MAX_CACHED` bytes in all) and handed out again for a request
//! of exactly the same size and alignment, which is what the next step asks for.
//!
//! Small blocks (below `SMALL`) go to mimalloc rather than glibc's malloc: tokenizing allocates a
//! few small strings per token, and under glibc those calls were 45% of `doge data prepare`'s
//! time (perf). Larger ones stay with glibc: with mimalloc for everything a Doge-20M training
//! step peaked 12% higher (593 vs 527 MB) at the same speed. Which allocator owns a block is a
//! function of its size alone, which `dealloc` and `realloc` are given again.

use std::alloc::{GlobalAlloc, Layout, System};

use mimalloc::MiMalloc;

/// Blocks below this size come from mimalloc, the others from `System` (glibc).
const SMALL: usize = 64 << 10;

fn small(size: usize) -> bool {
    size < SMALL
}
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

const MIN_CACHED: usize = 1 << 20;
const MAX_CACHED: usize = 512 << 20;
const SLOTS: usize = 64;

#[derive(Clone, Copy)]
struct Block {
    ptr: *mut u8,
    size: usize,
    align: usize,
}

struct Cache {
    blocks: [Block; SLOTS],
    len: usize,
    bytes: usize,
}

/// Off: every request goes straight to `System` (`DOGE_CACHING_ALLOC=0`, for comparisons).
static DISABLED: AtomicBool = AtomicBool::new(false);

/// Turns the cache off (or on again) for the rest of the process.
pub fn set_enabled(on: bool) {
    DISABLED.store(!on, Ordering::Relaxed);
}

fn cached(layout: Layout) -> bool {
    layout.size() >= MIN_CACHED && !DISABLED.load(Ordering::Relaxed)
}

/// The cache behind a spin lock (the allocator must not allocate, and holds it for a few loads).
pub struct CachingAlloc {
    locked: AtomicBool,
    cache: std::cell::UnsafeCell<Cache>,
}

// SAFETY: `cache` is only touched while `locked` is held.
unsafe impl Sync for CachingAlloc {}

const EMPTY: Block = Block {
    ptr: ptr::null_mut(),
    size: 0,
    align: 0,
};

impl CachingAlloc {
    pub const fn new() -> Self {
        Self {
            locked: AtomicBool::new(false),
            cache: std::cell::UnsafeCell::new(Cache {
                blocks: [EMPTY; SLOTS],
                len: 0,
                bytes: 0,
            }),
        }
    }

    fn with_cache<R>(&self, f: impl FnOnce(&mut Cache) -> R) -> R {
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        // SAFETY: the lock is held.
        let r = f(unsafe { &mut *self.cache.get() });
        self.locked.store(false, Ordering::Release);
        r
    }

    fn take(&self, layout: Layout) -> *mut u8 {
        self.with_cache(|c| {
            let found = c.blocks[..c.len]
                .iter()
                .position(|b| b.size == layout.size() && b.align == layout.align());
            match found {
                Some(i) => {
                    let b = c.blocks[i];
                    c.len -= 1;
                    c.blocks[i] = c.blocks[c.len];
                    c.bytes -= b.size;
                    b.ptr
                }
                None => ptr::null_mut(),
            }
        })
    }

    /// Keeps the block if there is room; false when the caller must free it.
    fn keep(&self, ptr: *mut u8, layout: Layout) -> bool {
        self.with_cache(|c| {
            if c.len == SLOTS || c.bytes + layout.size() > MAX_CACHED {
                return false;
            }
            c.blocks[c.len] = Block {
                ptr,
                size: layout.size(),
                align: layout.align(),
            };
            c.len += 1;
            c.bytes += layout.size();
            true
        })
    }
}

impl Default for CachingAlloc {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: a block of size below SMALL is always mimalloc's, any other `System`'s (realloc moves
// a block that crosses SMALL); every cached block (at least 1 MiB) was allocated by `System` with
// the same size and alignment, and is handed out once (it leaves the cache when taken).
unsafe impl GlobalAlloc for CachingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if cached(layout) {
            let p = self.take(layout);
            if !p.is_null() {
                return p;
            }
        }
        if small(layout.size()) {
            return MiMalloc.alloc(layout);
        }
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if cached(layout) {
            let p = self.take(layout);
            if !p.is_null() {
                ptr::write_bytes(p, 0, layout.size());
                return p;
            }
        }
        if small(layout.size()) {
            return MiMalloc.alloc_zeroed(layout);
        }
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match (small(layout.size()), small(new_size)) {
            (true, true) => MiMalloc.realloc(ptr, layout, new_size),
            // A large live block came from `System` (cached or not), so growing it in place
            // (mremap for large ones) is System's job.
            (false, false) => System.realloc(ptr, layout, new_size),
            // Crossing SMALL: move it to the other allocator.
            _ => {
                let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
                let new = self.alloc(new_layout);
                if !new.is_null() {
                    ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                new
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if cached(layout) && self.keep(ptr, layout) {
            return;
        }
        if small(layout.size()) {
            return MiMalloc.dealloc(ptr, layout);
        }
        System.dealloc(ptr, layout)
    }
}
