//! The process's allocator, and the one setting volley changes in it.
//!
//! The only unsafe code in the workspace (docs/decisions/0014-allocator-purge.md): two calls
//! into mimalloc's C API, which the `mimalloc` crate does not wrap.
#![allow(unsafe_code)]

use std::ffi::{c_int, c_long};

/// mimalloc gives freed memory back to the system, so the process's RSS follows what a run
/// holds now instead of the highest it ever held (glibc's per-thread arenas kept the peak of
/// every batch collected; bench/RESULTS.md). Its v2 line (the `v2` feature in the workspace
/// manifest): at a million requests v3 peaked 27 MiB higher with the same live data.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay`: its place in mimalloc v2's `mi_option_t` (include/mimalloc.h).
const PURGE_DELAY: c_int = 15;

unsafe extern "C" {
    #[cfg(test)]
    fn mi_option_get(option: c_int) -> c_long;
    fn mi_option_set(option: c_int, value: c_long);
}

/// Returns freed pages to the system at once instead of 10 ms later (mimalloc's default).
///
/// A delayed purge is carried out by the thread that freed the memory, the next time it
/// allocates; SQLite's connection threads and tokio's blocking threads free a batch's worth
/// and then sit idle, so their pages stayed resident: a million-request run peaked at
/// ~190 MiB instead of ~150, for ~5–10% less CPU (pages reused are not faulted in again).
/// `MIMALLOC_PURGE_DELAY`, when set, wins.
pub(crate) fn configure() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: sets an integer option; mimalloc stores options atomically and reads them on
    // every purge, from any thread.
    unsafe { mi_option_set(PURGE_DELAY, 0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The current purge delay, in milliseconds.
    fn purge_delay() -> c_long {
        // SAFETY: reads an integer option (see `configure`).
        unsafe { mi_option_get(PURGE_DELAY) }
    }

    #[test]
    fn the_purge_delay_option_is_where_volley_sets_it() {
        // mimalloc v2's documented defaults around it: eager_commit_delay 1, purge_delay 10,
        // use_numa_nodes 0. A different layout (another mimalloc line) fails here.
        // SAFETY: reads integer options.
        let around = unsafe { [mi_option_get(14), mi_option_get(16)] };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(purge_delay(), 10);
        }
        assert_eq!(around, [1, 0]);
        configure();
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(purge_delay(), 0);
        }
    }
}
