//! The process's allocator on glibc: few arenas, and freed memory handed back to the kernel.
//!
//! A long-running bridge allocates from several threads (the runtime's workers, the journal
//! writer, the OPC UA server) in bursts (a REST page, a journal batch, a Sparkplug backlog).
//! glibc gives busy threads arenas of their own and keeps what is freed in them for reuse, so
//! the resident size creeps up long after the live heap stopped growing: in the soak
//! (`shopbridge bench soak`, 200 machines) heaptrack saw the live heap flat at about 23 MiB
//! while RSS climbed past 100 MiB, most of it free space in three thread arenas. So, for the
//! long-running commands, before their threads start: at most two arenas; blocks from 128 KiB
//! up mapped on their own (unmapped when freed) rather than carved from an arena; and a thread
//! that calls `malloc_trim(0)` every [`TRIM_EVERY`], which returns the free pages inside every
//! arena to the kernel. Elsewhere (musl, other systems) these are no-ops.

use std::time::Duration;

/// How often free arena pages are returned to the kernel.
pub const TRIM_EVERY: Duration = Duration::from_secs(30);

/// Tunes the allocator and starts the trimming thread. Call once, before the runtime starts.
pub fn tune_for_long_run() {
    imp::start();
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    use super::TRIM_EVERY;

    /// Arenas: the main one and one for every other thread (the default is 8 per core).
    const ARENA_MAX: libc::c_int = 2;
    /// Allocations at least this large are mapped on their own and unmapped when freed (a
    /// fixed value also stops glibc from raising the threshold after a large free).
    const MMAP_THRESHOLD: libc::c_int = 128 << 10;
    /// Free space at the top of the main heap beyond this is returned at once.
    const TRIM_THRESHOLD: libc::c_int = 128 << 10;

    pub fn start() {
        tune();
        let spawned = std::thread::Builder::new()
            .name("malloc-trim".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(TRIM_EVERY);
                    // SAFETY: malloc_trim takes a plain integer and locks each arena itself.
                    unsafe { libc::malloc_trim(0) };
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the allocator trimming thread; memory freed by bursts stays resident");
        }
    }

    fn tune() {
        for (param, value, name) in [
            (libc::M_ARENA_MAX, ARENA_MAX, "M_ARENA_MAX"),
            (libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD, "M_MMAP_THRESHOLD"),
            (libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD, "M_TRIM_THRESHOLD"),
        ] {
            // SAFETY: mallopt takes plain integers; it is called before other threads allocate.
            if unsafe { libc::mallopt(param, value) } != 1 {
                tracing::warn!(param = name, value, "glibc refused an allocator setting");
            }
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub fn start() {}
}
