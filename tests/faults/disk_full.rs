//! The data directory's disk fills up, then space returns.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::Row;
use crate::rig::{self, Feeder, ShdrRig, T};

/// A small tmpfs mounted for the test (root only), unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "the disk-full fault mounts a {size} tmpfs and needs root (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `path` with one file; returns how many bytes it took.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0x5au8; 64 * 1024];
    let mut n = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k as u64,
        }
    }
    // The last few bytes too.
    while let Ok(k) = f.write(&chunk[..512]) {
        if k == 0 {
            break;
        }
        n += k as u64;
    }
    n
}

/// The free-space guard's case: the disk fills up, the journal holds before writing.
pub fn run() -> Row {
    scenario("2MiB")
}

/// Without the guard (`min_free_bytes = 0`, or another process filling the disk between the
/// check and the write): a journal write fails; the journal reopens its file and holds.
pub fn write_fails() -> Row {
    scenario("0")
}

fn scenario(min_free: &str) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&dir.path().join("data"), "24m");
    let mut r = ShdrRig::start_in(dir, &format!("min_free_bytes = \"{min_free}\""), "");
    let http = r.bridge.http();
    let mut feeder = Feeder::start(&r.adapter, Duration::from_millis(5));
    r.mqtt.until_part(100, T);

    let ballast = r.dir.path().join("data/ballast");
    let filled = fill(&ballast);
    let full_from = feeder.last.load(std::sync::atomic::Ordering::SeqCst);
    // A full disk until the bridge says so (at most 40 s), then 5 s more: it must keep
    // serving and hold on.
    let began = Instant::now();
    let mut said_at = None;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        assert!(r.bridge.alive(), "the bridge died: {}", r.bridge.log_tail());
        // Whatever crept back (a file the bridge deleted) is taken again.
        if min_free != "0" {
            fill(&r.dir.path().join("data/ballast2"));
        }
        if said_at.is_none() && journal_error(&r.bridge.log()) {
            said_at = Some(began.elapsed());
        }
        match said_at {
            Some(t) if began.elapsed() > t + Duration::from_secs(5) => break,
            None if began.elapsed() > Duration::from_secs(40) => panic!(
                "no ERROR about the journal 40 s into a full disk: {}",
                r.bridge.log_tail()
            ),
            _ => {}
        }
    }
    let (code, _) = rig::http_get(http, "/healthz", Duration::from_secs(5)).expect("healthz");
    assert!(code > 0, "the API stopped answering");
    let log = r.bridge.log();
    let how = if log.contains("reopened the journal") {
        "a write failed: the journal reopened its file and retried"
    } else {
        "the free-space guard held the records before a write could fail"
    };
    let full_to = feeder.last.load(std::sync::atomic::Ordering::SeqCst);
    std::fs::remove_file(&ballast).unwrap();
    let _ = std::fs::remove_file(r.dir.path().join("data/ballast2"));
    std::thread::sleep(Duration::from_secs(3));
    let f = r.finish(&mut feeder, Duration::from_secs(60));

    let (o, s, d, lost) = f.counts;
    drop(fs);
    Row {
        fault: if min_free != "0" {
            "data directory's disk full for 10 s (24 MiB tmpfs), then space returns".into()
        } else {
            "the same without the free-space guard (min_free_bytes = 0): a journal write fails"
                .into()
        },
        offered: o,
        stored: s,
        delivered: d,
        lost,
        notes: format!(
            "{} MiB of ballast; parts #{full_from}–#{full_to} made while full; {how}; ERROR \
             logged, API up; the journal is contiguous",
            filled >> 20
        ),
    }
}

fn journal_error(log: &str) -> bool {
    log.lines()
        .any(|l| l.contains("ERROR") && l.contains("journal cannot write"))
}
