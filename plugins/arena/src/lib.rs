//! The allocator of Nixo's Rust rule plugins. The host makes a fresh
//! instance for every decision and throws it away after, so allocations
//! come from an arena in the module's own zeroed memory and are never freed.
//! Without it the first allocation grows the memory, and the host's pool
//! must shrink it back before the next instance (an mprotect and a TLB
//! shootdown per decision: more kernel work than the decision itself).
//! Past the arena, the system allocator takes over.
//!
//! A plugin links it with `use nixo_rule_arena as _;`; it is the global
//! allocator on wasm targets only (native builds and tests keep the system's).

#[cfg(target_family = "wasm")]
#[allow(unsafe_code)]
mod wasm {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::UnsafeCell;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Bytes of the arena (zeroed memory of the module, part of its initial size).
    pub const ARENA_BYTES: usize = 256 * 1024;

    #[repr(C, align(16))]
    struct Arena(UnsafeCell<[u8; ARENA_BYTES]>);

    // One thread per instance (wasm32 without threads).
    unsafe impl Sync for Arena {}

    static ARENA: Arena = Arena(UnsafeCell::new([0; ARENA_BYTES]));
    static USED: AtomicUsize = AtomicUsize::new(0);

    struct Bump;

    unsafe impl GlobalAlloc for Bump {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let base = ARENA.0.get() as usize;
            let start = (base + USED.load(Ordering::Relaxed)).next_multiple_of(layout.align());
            match start.checked_add(layout.size()) {
                Some(end) if end <= base + ARENA_BYTES => {
                    USED.store(end - base, Ordering::Relaxed);
                    start as *mut u8
                }
                // SAFETY: the layout is the caller's, passed on unchanged.
                _ => unsafe { System.alloc(layout) },
            }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            let base = ARENA.0.get() as usize;
            if !(base..base + ARENA_BYTES).contains(&(ptr as usize)) {
                // SAFETY: outside the arena, `ptr` came from `System.alloc` with `layout`.
                unsafe { System.dealloc(ptr, layout) }
            }
        }
    }

    #[global_allocator]
    static GLOBAL: Bump = Bump;
}
