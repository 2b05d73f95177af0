//! Config parsing: any text gives a config or located errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thirdparty_gateway::config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(config::ConfigError::Invalid(diags)) =
        config::parse(std::path::Path::new("fuzz.toml"), text)
    {
        assert!(!diags.is_empty());
        for d in diags {
            let _ = d.to_string();
        }
    }
});
