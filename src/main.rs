fn main() -> std::process::ExitCode {
    fixed_malloc_thresholds();
    berqenas::cli::main()
}

/// glibc raises its mmap threshold to the size of each large block freed (up to 32 MB),
/// and its trim threshold to twice that, so after one big transient buffer (a page of
/// rows, a migration plan, a metrics scrape) every later one comes from the heap and
/// stays resident once freed. Fixed at glibc's starting 128 KiB, blocks that large
/// are mapped and unmapped, and free heap tops go back: a server at 10,000 tenants
/// ends the scale benchmark at 56 MB instead of 85 to 143 MB (docs/scale.md, run 20).
/// Before any thread starts: `mallopt` is not meant to race allocations.
fn fixed_malloc_thresholds() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const THRESHOLD: libc::c_int = 128 * 1024;
        // SAFETY: plain calls into glibc with valid parameters, made while this
        // process has one thread; a refusal (0) only keeps glibc's defaults.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, THRESHOLD);
        }
    }
}
