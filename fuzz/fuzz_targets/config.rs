//! Config parsing: any text gives a config or located errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thirdparty_gateway::config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(err @ config::ConfigError::Invalid { .. }) =
        config::parse(std::path::Path::new("fuzz.toml"), text)
    {
        let config::ConfigError::Invalid { errors, warnings } = &err else {
            return;
        };
        assert!(!errors.is_empty());
        for d in errors.iter().chain(warnings) {
            let _ = d.render();
        }
        let _ = err.render();
    }
});
