//! The process's allocator: mimalloc, entered by its plain `mi_malloc` path whenever the
//! layout's alignment is one mimalloc gives every block anyway (16 bytes on 64-bit targets).
//!
//! `mimalloc::MiMalloc` passes every layout to `mi_malloc_aligned`, whose fast path only
//! applies to blocks of at most 1 KiB that happen to be aligned already; larger ones (a
//! request's futures, header maps, read buffers) take its generic aligned path, about 175
//! instructions each, some twenty times per proxied request. Over-aligned layouts (cache-
//! padded counters, runtime tasks) still go to the aligned entry points.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

/// What `mi_malloc` guarantees for every block (`MI_MAX_ALIGN_SIZE`).
const NATURAL: usize = 16;

/// mimalloc with its unaligned fast path (see the module's text).
pub struct Allocator;

#[inline]
fn natural(layout: &Layout) -> bool {
    layout.align() <= NATURAL
}

unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe {
            if natural(&layout) {
                libmimalloc_sys::mi_malloc(layout.size()) as *mut u8
            } else {
                libmimalloc_sys::mi_malloc_aligned(layout.size(), layout.align()) as *mut u8
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe {
            if natural(&layout) {
                libmimalloc_sys::mi_zalloc(layout.size()) as *mut u8
            } else {
                libmimalloc_sys::mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        unsafe { libmimalloc_sys::mi_free(ptr as *mut c_void) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe {
            if natural(&layout) {
                libmimalloc_sys::mi_realloc(ptr as *mut c_void, new_size) as *mut u8
            } else {
                libmimalloc_sys::mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_keep_their_alignment_and_contents() {
        let a = Allocator;
        for (size, align) in [(1, 1), (24, 8), (1500, 8), (11_000, 16), (64, 64), (3000, 128), (1 << 20, 4096)] {
            let layout = Layout::from_size_align(size, align).expect("layout");
            unsafe {
                let p = a.alloc(layout);
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0, "{size} bytes at {align}");
                p.write_bytes(0xab, size);
                let q = a.realloc(p, layout, size * 3);
                assert_eq!(q as usize % align, 0, "{size} bytes at {align}, grown");
                assert!(std::slice::from_raw_parts(q, size).iter().all(|b| *b == 0xab), "contents kept");
                a.dealloc(q, Layout::from_size_align(size * 3, align).expect("layout"));
                let z = a.alloc_zeroed(layout);
                assert_eq!(z as usize % align, 0);
                assert!(std::slice::from_raw_parts(z, size).iter().all(|b| *b == 0), "zeroed");
                a.dealloc(z, layout);
            }
        }
    }
}
