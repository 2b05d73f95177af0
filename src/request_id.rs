//! Request ids: short, unique across instances and restarts without any
//! coordination (a random per-process prefix and a counter), so a log line
//! can be tied to the reply a browser saw (`X-Request-Id`).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use ring::rand::{SecureRandom, SystemRandom};

use crate::short_text::Short;

/// The reply header that carries the id.
pub const HEADER: http::HeaderName = http::HeaderName::from_static("x-request-id");

static COUNTER: AtomicU64 = AtomicU64::new(1);
static PREFIX: OnceLock<u32> = OnceLock::new();

/// One request's id, e.g. `3fa2c1d0-17`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestId {
    prefix: u32,
    n: u64,
}

impl RequestId {
    /// The next id of this process.
    pub fn next() -> Self {
        let prefix = *PREFIX.get_or_init(|| {
            let mut bytes = [0u8; 4];
            // Without randomness ids are still unique within the process.
            let _ = SystemRandom::new().fill(&mut bytes);
            u32::from_be_bytes(bytes)
        });
        Self {
            prefix,
            n: COUNTER.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl RequestId {
    /// The id as text, written on the stack: it goes in every request's
    /// log line and `X-Request-Id`.
    pub fn text(&self) -> Short {
        Short::empty()
            .hex(u64::from(self.prefix), 8)
            .ascii(b'-')
            .hex(self.n, 0)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text().as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_share_the_process_prefix() {
        let (a, b) = (RequestId::next(), RequestId::next());
        assert_ne!(a, b);
        assert_eq!(a.to_string()[..9], b.to_string()[..9]);
        let id = RequestId {
            prefix: 0x3fa2c1d,
            n: 0x17,
        };
        assert_eq!(id.to_string(), "03fa2c1d-17");
    }
}
