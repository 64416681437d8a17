//! A counting global allocator for the hot-path benchmarks: each bench prints, beside
//! criterion's times, how many allocations one iteration makes (`allocs/iter`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `f` a thousand times (after one warm-up call) and prints its allocations per call.
pub fn allocations<T>(name: &str, mut f: impl FnMut() -> T) {
    const N: usize = 1000;
    std::hint::black_box(f());
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..N {
        std::hint::black_box(f());
    }
    let n = ALLOCATIONS.load(Ordering::Relaxed) - before;
    println!("{name:<48} allocs/iter: {:.2}", n as f64 / N as f64);
}
