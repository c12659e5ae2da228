//! Memory accounting for benchmarks: a global allocator that counts live bytes and their
//! peak, and the bytes copied between host and device ([`transferred`]). A binary opts in with
//! `#[global_allocator] static A: Counting<System> = Counting(System);` (any allocator inside);
//! without it [`live`] and [`peak`] answer `None`.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// An allocator wrapper counting live heap bytes and their high-water mark.
pub struct Counting<A>(pub A);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to the inner allocator; the counters only observe sizes.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        INSTALLED.store(true, Ordering::Relaxed);
        let p = self.0.alloc(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        INSTALLED.store(true, Ordering::Relaxed);
        let p = self.0.alloc_zeroed(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.0.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = self.0.realloc(ptr, layout, new_size);
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

/// Bytes allocated and not yet freed, when [`Counting`] is the global allocator.
pub fn live() -> Option<usize> {
    INSTALLED.load(Ordering::Relaxed).then(|| LIVE.load(Ordering::Relaxed))
}

/// The most bytes live at once since the last [`reset_peak`].
pub fn peak() -> Option<usize> {
    INSTALLED.load(Ordering::Relaxed).then(|| PEAK.load(Ordering::Relaxed))
}

/// Start a new high-water mark from the bytes live now.
pub fn reset_peak() {
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
}

static TO_DEVICE: AtomicU64 = AtomicU64::new(0);
static TO_HOST: AtomicU64 = AtomicU64::new(0);

/// Bytes copied between host memory and device tensors since the process started, counted
/// where values cross (a value made from or read into a host vector, a gradient read back,
/// a parameter a device without its own optimiser kernel updates on the host). On CUDA
/// these are transfers; on the CPU device, copies between vectors and tensors. Kernels'
/// own buffers are not counted: they are the device's memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transfers {
    /// Bytes to the device.
    pub to_device: u64,
    /// Bytes to the host.
    pub to_host: u64,
}

/// The bytes copied so far (see [`Transfers`]).
pub fn transferred() -> Transfers {
    Transfers { to_device: TO_DEVICE.load(Ordering::Relaxed), to_host: TO_HOST.load(Ordering::Relaxed) }
}

/// Count `n` `f32`s read back to the host.
pub(crate) fn count_to_host(n: usize) {
    TO_HOST.fetch_add(4 * n as u64, Ordering::Relaxed);
}

/// Count `n` `f32`s copied to the device.
pub(crate) fn count_to_device(n: usize) {
    TO_DEVICE.fetch_add(4 * n as u64, Ordering::Relaxed);
}

/// The process's peak resident set size in bytes (Linux `VmHWM`), if known.
pub fn peak_rss() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Tunes glibc's allocator for large tensors: serve every allocation from one heap (no
/// per-buffer `mmap`, no per-thread arenas) and keep freed memory instead of returning it
/// to the system.
///
/// Big activations and gradients are freed and re-allocated every iteration. By default
/// glibc maps each one (> 32 MiB) afresh and the first touch of every page faults, which
/// costs more than the memory-bound kernels themselves; a cache of exact-size buffers (as
/// dfdx's) avoids the faults but keeps every size it has seen, so a training process grows
/// well past its live peak. The heap reuses freed memory for any size. One arena, because
/// glibc unmaps a worker thread's arena heap as soon as it empties (measured at Stage-II
/// batch 4: 2.4× the page faults with per-thread arenas). Call once at start.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes allocator parameters; called before other threads run.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
