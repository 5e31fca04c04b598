//! Link flags that depend on the system the bridge is built on.
//!
//! The relative relocations of the binary are packed as DT_RELR (`-z pack-relative-relocs`)
//! when it is built for the build machine's own Linux and that has glibc 2.36 or newer (Debian
//! 12, the packages' base). The loader then no longer reads 1.9 MB of `.rela.dyn` at every
//! start, and those pages no longer stay resident: about 8 % of the bridge's RSS with 10 Modbus
//! devices. A glibc older than 2.36 cannot load such a binary, so there the flag is left out.

use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    let host = std::env::var("HOST").unwrap_or_default();
    if target == host && target.ends_with("-linux-gnu") && glibc_at_least(2, 36) {
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// The build machine's glibc, from `getconf GNU_LIBC_VERSION` ("glibc 2.36").
fn glibc_at_least(major: u32, minor: u32) -> bool {
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(version) = text.split_whitespace().nth(1) else {
        return false;
    };
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}
