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
//! munmap). The threshold is fixed at 1 MiB: the 22 TPC-H SF1 queries ran 6.4% faster
//! (geomean, interleaved on two servers) for 9% more peak RSS (510 vs 469 MiB); 32 MiB
//! gave 8.4% for 28% more. A user who sets `MALLOC_MMAP_THRESHOLD_` keeps their value.

/// Fixes glibc's mmap threshold at 1 MiB, unless the environment sets one.
pub fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt only changes malloc's tuning parameters; it is called once,
        // before any thread is started.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
        }
    }
}
