//! Payload parsing: any bytes give a payload or a one-line error, never a
//! panic; a parsed payload serializes for templates, and what templates see
//! of `user` (serialized, or read field by field) never holds the token.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thirdparty_gateway::contract::parse_payload;

fuzz_target!(|data: &[u8]| {
    match parse_payload(data) {
        Ok(payload) => {
            let json = serde_json::to_value(&payload).expect("a parsed payload serializes");
            assert!(json["user"].get("token").is_none(), "{json}");
            let ctx = payload.context();
            let user = ctx.get_attr("user").expect("user is a map");
            assert!(user.get_attr("token").map_or(true, |t| t.is_undefined()));
            for key in ["caller", "callee", "queue", "userData", "callDataCallId"] {
                let _ = ctx.get_attr(key).map(|v| v.to_string());
            }
        }
        Err(message) => assert!(!message.contains('\n'), "{message}"),
    }
});
