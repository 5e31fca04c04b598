//! The process's allocator on glibc: few arenas, and freed memory handed back to the kernel.
//!
//! A long-running bridge allocates from several threads (the runtime's workers, the journal
//! writer, the OPC UA server) in bursts (a REST page, a journal batch, a Sparkplug backlog).
//! glibc gives busy threads arenas of their own and keeps what is freed in them for reuse, so
//! the resident size creeps up long after the live heap stopped growing: in the soak
//! (`shopbridge bench soak`, 200 machines) heaptrack saw the live heap flat at about 23 MiB
//! while RSS climbed past 100 MiB, most of it free space in three thread arenas. So, for the
//! long-running commands, before their threads start: at most two arenas, and a thread that
//! calls `malloc_trim(0)` every [`TRIM_EVERY`], which returns the free pages inside every arena
//! to the kernel. glibc's mmap and trim thresholds keep their defaults: pinning them at 128 KiB
//! put buffers of the journal's batches on fresh mappings again and again, which cost CPU (1.17
//! against 0.72 % of one core in the Node-RED comparison at 50 devices × 10 registers).
//! Elsewhere (musl, other systems) these are no-ops.

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
        // SAFETY: mallopt takes plain integers; it is called before other threads allocate.
        if unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX) } != 1 {
            tracing::warn!(
                value = ARENA_MAX,
                "glibc refused the allocator setting M_ARENA_MAX"
            );
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub fn start() {}
}
