//! Short texts written on the stack: the request id and latencies that go in
//! every request's log line (and the id in `X-Request-Id`), written without
//! `fmt` machinery or an allocation. Shared by `request_id` and `logging`,
//! so neither needs the other.

use std::fmt;
use std::time::Duration;

/// A short text written on the stack, for a log field that would otherwise
/// go through `fmt`: ids and latencies on every request line.
#[derive(Clone, Copy)]
pub struct Short {
    buf: [u8; 32],
    len: usize,
}

impl Short {
    /// An empty text to build on.
    pub fn empty() -> Self {
        Self {
            buf: [0; 32],
            len: 0,
        }
    }

    fn push(&mut self, byte: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }

    /// `n` in decimal, at least `width` digits.
    pub(crate) fn decimal(&mut self, mut n: u64, width: usize) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        while i > 0 && (n > 0 || digits.len() - i < width.max(1)) {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        digits[i..].iter().for_each(|&d| self.push(d));
    }

    /// `n` in lowercase hex, at least `width` digits.
    pub fn hex(mut self, n: u64, width: usize) -> Self {
        let digits = (64 - n.leading_zeros())
            .div_ceil(4)
            .max(width as u32)
            .max(1);
        for shift in (0..digits).rev() {
            let nibble = (n >> (shift * 4)) as u8 & 0xf;
            self.push(b"0123456789abcdef"[usize::from(nibble)]);
        }
        self
    }

    /// One byte of ASCII.
    pub fn ascii(mut self, c: u8) -> Self {
        if c.is_ascii() {
            self.push(c);
        }
        self
    }

    /// Milliseconds with two decimals, `4.93`, rounded to the nearest.
    pub fn millis(d: Duration) -> Self {
        let hundredths = (d.as_nanos() + 5_000) / 10_000;
        let hundredths = u64::try_from(hundredths).unwrap_or(u64::MAX);
        let mut s = Self::empty();
        s.decimal(hundredths / 100, 1);
        s.push(b'.');
        s.decimal(hundredths % 100, 2);
        s
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever pushed.
        std::str::from_utf8(self.buf.get(..self.len).unwrap_or_default()).unwrap_or_default()
    }
}

impl fmt::Display for Short {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Short {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_texts_match_fmt() {
        for ms in [
            0u64,
            4,
            5,
            9_999,
            10_000,
            4_925_000,
            4_934_999,
            123_456_789_012,
        ] {
            let d = Duration::from_nanos(ms);
            let exact = ms as f64 / 1e6;
            let ours: f64 = Short::millis(d).as_str().parse().unwrap();
            assert!(
                (ours - exact).abs() <= 0.005 + 1e-9,
                "{ms} ns: {}",
                Short::millis(d)
            );
            assert_eq!(
                Short::millis(d).as_str().split('.').nth(1).map(str::len),
                Some(2)
            );
        }
        assert_eq!(Short::millis(Duration::from_micros(4_930)).as_str(), "4.93");
        for (n, w) in [
            (0u64, 8),
            (0x3fa2c1d0, 8),
            (0x17, 0),
            (0, 0),
            (u64::MAX, 0),
            (0xab, 8),
        ] {
            let ours = Short::empty().hex(n, w);
            assert_eq!(ours.as_str(), format!("{n:0w$x}"), "{n:x} {w}");
        }
        let id = Short::empty().hex(1, 8).ascii(b'-').hex(0x17, 0);
        assert_eq!(id.to_string(), "00000001-17");
    }
}
