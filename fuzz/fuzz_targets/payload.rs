//! Payload parsing: any bytes give a payload or a one-line error, never a
//! panic; a parsed payload serializes for templates, and what templates see
//! of `user` never holds the token.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thirdparty_gateway::contract::parse_payload;

fuzz_target!(|data: &[u8]| {
    match parse_payload(data) {
        Ok(payload) => {
            let json = serde_json::to_value(&payload).expect("a parsed payload serializes");
            assert!(json["user"].get("token").is_none(), "{json}");
        }
        Err(message) => assert!(!message.contains('\n'), "{message}"),
    }
});
