//! Configuration and machine profiles from TOML text: `config::load_str` (with environment
//! overrides), the built-in profiles a loaded configuration's machines name, and
//! `normalize::profile::load_str` for a profile of one's own (which may `extends` a built-in
//! one). Bad input is a `ConfigErrors` (rendered, with line and column), never a panic.
//!
//! Layout: byte 0 picks the reader; the rest is the text. For the configuration reader, text
//! after a line `#--env--` is `KEY=VALUE` lines given as the environment.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shopbridge::config;
use shopbridge::normalize::ProfileSource;
use shopbridge::normalize::profile;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if mode & 1 == 0 {
        let (toml, env) = text.split_once("\n#--env--\n").unwrap_or((text, ""));
        let env: Vec<(String, String)> = env
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match config::load_str_with_env(toml, "shopbridge.toml", env) {
            Ok(cfg) => {
                // The profiles it names, as the app loads them (built-ins only: a fuzzed
                // `[profiles] dir` would read whatever directory it names).
                if cfg.profiles.dir.is_none() {
                    let source = cfg.profiles.source();
                    for m in cfg.machines.iter().take(2) {
                        if let Err(e) = source.load(&m.profile) {
                            let _ = e.to_string();
                        }
                    }
                }
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    } else {
        match profile::load_str("fuzz", text, &ProfileSource::default()) {
            Ok(p) => {
                let _ = p.shdr_items().count();
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
