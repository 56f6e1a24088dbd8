//! Time and memory watch for one fuzz input: a slow or memory-hungry unit is a finding, the
//! same as a panic (belay's parsers promise linear time and bounded memory on hostile input).
//!
//! A target declares the counting allocator and wraps its body:
//! `#[global_allocator] static ALLOC: watch::Counting = watch::Counting;` and
//! `watch::unit(data.len(), || { ... })`. Limits: `BELAY_FUZZ_UNIT_MS` (default 1000) and
//! `BELAY_FUZZ_UNIT_MB` (default 256), per input. Time is the thread's CPU time, not the wall
//! clock: a fuzzer run beside other work (or at a low priority) must not report a fast input
//! as slow. libFuzzer's `-timeout` (whole seconds, wall clock) and `-rss_limit_mb` (the whole
//! process) stay as outer bounds.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting live bytes and their peak.
pub struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator, with the caller's contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
            PEAK.fetch_max(now, Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator, with the caller's contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let now = LIVE.fetch_add(new_size - layout.size(), Relaxed) + new_size
                    - layout.size();
                PEAK.fetch_max(now, Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Relaxed);
            }
        }
        p
    }
}

fn limit(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

static UNIT_TIME: LazyLock<Duration> =
    LazyLock::new(|| Duration::from_millis(limit("BELAY_FUZZ_UNIT_MS", 1000)));
static UNIT_BYTES: LazyLock<usize> =
    LazyLock::new(|| limit("BELAY_FUZZ_UNIT_MB", 256) as usize * 1024 * 1024);

/// CPU time this thread has used so far.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the kernel knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "the thread CPU clock is unavailable");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs one fuzz input and panics (a finding libFuzzer saves) when it took longer than the
/// unit time or its allocations peaked above the unit memory, above what was live before.
pub fn unit(input_len: usize, f: impl FnOnce()) {
    let (time, bytes) = (*UNIT_TIME, *UNIT_BYTES);
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let started = thread_cpu_time();
    f();
    let took = thread_cpu_time().saturating_sub(started);
    let peak = PEAK.load(Relaxed).saturating_sub(base);
    assert!(
        took <= time,
        "slow unit: {input_len} input bytes took {took:?} of CPU (limit {time:?})"
    );
    assert!(
        peak <= bytes,
        "memory-hungry unit: {input_len} input bytes peaked at {peak} allocated bytes (limit {bytes})"
    );
}
