//! A counting global allocator, per thread (parallel tests do not disturb each other): the
//! hot-path benchmarks print how many allocations one iteration makes (`allocs/iter`), and
//! `tests/alloc.rs` pins those counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

pub struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations `f` makes on this thread.
pub fn allocations<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let before = ALLOCATIONS.with(Cell::get);
    let out = f();
    (ALLOCATIONS.with(Cell::get) - before, out)
}

/// Runs `f` a thousand times (after one warm-up call) and prints its allocations per call.
#[allow(dead_code)] // used by the benches, not by tests/alloc.rs
pub fn report<T>(name: &str, mut f: impl FnMut() -> T) {
    const N: usize = 1000;
    std::hint::black_box(f());
    let (n, ()) = allocations(|| {
        for _ in 0..N {
            std::hint::black_box(f());
        }
    });
    println!("{name:<48} allocs/iter: {:.2}", n as f64 / N as f64);
}
