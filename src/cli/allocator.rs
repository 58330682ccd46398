//! How the process's allocator gives memory back.
//!
//! glibc's malloc raises its mmap threshold each time a large block is freed (up to
//! 32 MiB), after which blocks of that size come from the heap and stay resident when
//! freed. DataFusion frees many megabyte-sized buffers, so resident memory drifted far
//! past `engine.memory_limit`: a grouped `string_agg` over 20M rows under a 256 MiB
//! limit peaked at 887 MiB and stayed at 435 MiB afterwards; with the threshold fixed at
//! its initial 128 KiB, 383 MiB and 220 MiB. mimalloc was tried: 590 MiB peak.
//!
//! At 128 KiB, though, every batch-sized buffer was its own mmap: TPC-H spent a third of
//! its server CPU in the kernel (page faults, zeroing fresh pages, TLB flushes at
//! munmap). At 1 MiB the Flight SQL path still paid it: an encoded IPC message of
//! lineitem is about 1.4 MiB, and the trim threshold (128 KiB unless set) gave the top of
//! each heap back after every message, so a fetch of SF1 lineitem spent 20% of the
//! server's CPU in page faults and ran at 0.43-0.48 GB/s. The thresholds are fixed at
//! 4 MiB (mmap) and 8 MiB (trim, twice the mmap threshold as glibc's own dynamic rule
//! keeps it); see BENCHMARKS.md for the figures. A user who sets `MALLOC_MMAP_THRESHOLD_`
//! or `MALLOC_TRIM_THRESHOLD_` keeps their value.

/// Blocks of this size and up are mmap'd (and unmapped when freed).
const MMAP_THRESHOLD: i32 = 4 * 1024 * 1024;

/// Free memory at the top of a heap beyond this is given back to the system.
const TRIM_THRESHOLD: i32 = 2 * MMAP_THRESHOLD;

/// Fixes glibc's mmap and trim thresholds, unless the environment sets them.
pub fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (variable, parameter, value) in [
        (
            "MALLOC_MMAP_THRESHOLD_",
            libc::M_MMAP_THRESHOLD,
            MMAP_THRESHOLD,
        ),
        (
            "MALLOC_TRIM_THRESHOLD_",
            libc::M_TRIM_THRESHOLD,
            TRIM_THRESHOLD,
        ),
    ] {
        if std::env::var_os(variable).is_none() {
            // SAFETY: mallopt only changes malloc's tuning parameters; it is called
            // once, before any thread is started.
            unsafe {
                libc::mallopt(parameter, value);
            }
        }
    }
}
