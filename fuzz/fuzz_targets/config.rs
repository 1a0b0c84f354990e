//! Feeds arbitrary text to the config loader: it loads or names the problem, never panics. Seed
//! it with `docs/examples/image-feed.toml`. The bounded version runs in CI
//! (`fuzz_inputs::configs_…`).
//!
//! ```text
//! mkdir -p /tmp/config_corpus && cp docs/examples/image-feed.toml /tmp/config_corpus/
//! RUSTC_BOOTSTRAP=1 cargo fuzz run config /tmp/config_corpus -- -max_total_time=60
//! ```
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgroar::config::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Err(e) = Config::from_toml_str(text, [])
    {
        assert!(!e.to_string().is_empty());
    }
});
