fn main() -> std::process::ExitCode {
    malloc::tune();
    berqenas::cli::main()
}

/// How glibc's allocator gives memory back. `heaptrack` on the scale benchmark's server
/// creating 2,000 tenants: the live heap peaked at 6.8 MB, its RSS was 38.4 MB (about
/// 20 MB of it the binary's own pages; docs/scale.md): the rest is freed memory the
/// allocator kept, not data.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod malloc {
    use std::time::Duration;

    const THRESHOLD: libc::c_int = 128 * 1024;
    /// How often free pages inside the heaps go back to the system.
    const TRIM_EVERY: Duration = Duration::from_secs(10);

    /// Before any other thread starts (`mallopt` is not meant to race allocations):
    ///
    /// - glibc raises its mmap threshold to the size of each large block freed (up to
    ///   32 MB), and its trim threshold to twice that, so after one big transient
    ///   buffer (a page of rows, a migration's plan, a scrape) every later one comes
    ///   from a heap and stays resident once freed. Fixed at glibc's starting 128 KiB,
    ///   blocks that large are mapped and unmapped, and free heap tops go back;
    /// - a heap only shrinks from its top, and each thread's arena keeps the holes
    ///   that many short-lived allocations leave: a thread returns free pages from
    ///   inside every arena (`malloc_trim`) every [`TRIM_EVERY`].
    pub fn tune() {
        // SAFETY: plain calls into glibc with valid parameters, made while this
        // process has one thread; a refusal (0) only keeps glibc's defaults.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, THRESHOLD);
        }
        let trimmer = std::thread::Builder::new()
            .name("malloc-trim".into())
            .spawn(|| loop {
                std::thread::sleep(TRIM_EVERY);
                // SAFETY: glibc's malloc_trim takes each arena's lock itself.
                unsafe {
                    libc::malloc_trim(0);
                }
            });
        // Without the thread, memory only goes back less often: not worth failing for.
        drop(trimmer);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod malloc {
    pub fn tune() {}
}
