//! Parking idle HTTP/1 connections: a keep-alive connection that has been
//! quiet for [`PARK_AFTER`](crate::constants::PARK_AFTER) gives up its HTTP
//! state (hyper's read and write buffers, its cached header map, the
//! connection future) and keeps only its TLS session, until the first bytes
//! of its next request arrive. Most of the gateway's connections are agents'
//! browsers waiting between calls, so most connections are idle: this is
//! what nginx does when it frees a keep-alive connection's buffers.
//!
//! The bytes read while parked are handed to the next HTTP connection ahead
//! of the stream, by [`Prefixed`].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use crate::constants::PARKED_READ;

/// Waits for a parked connection's next bytes: the first of them (the TLS
/// layer keeps the rest for the HTTP layer), or nothing when the client
/// closed the connection. The buffer lives in the waiting task, which
/// allocates nothing until the client speaks.
pub async fn next_bytes<S: AsyncRead + Unpin>(io: &mut S) -> io::Result<Bytes> {
    let mut buf = [0u8; PARKED_READ];
    let n = io.read(&mut buf).await?;
    Ok(Bytes::copy_from_slice(&buf[..n]))
}

/// A stream that yields `prefix` before its own bytes.
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    /// The stream, after `prefix`.
    pub fn new(prefix: Bytes, inner: S) -> Self {
        Self { prefix, inner }
    }

    /// The stream and the part of the prefix not yet read.
    pub fn into_parts(self) -> (Bytes, S) {
        (self.prefix, self.inner)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.is_empty() {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let n = self.prefix.len().min(buf.remaining());
        buf.put_slice(&self.prefix[..n]);
        self.prefix.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn the_prefix_comes_first_then_the_stream() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b" world").await.unwrap();
        let mut stream = Prefixed::new(Bytes::from_static(b"hello"), server);
        let mut all = [0u8; 11];
        stream.read_exact(&mut all).await.unwrap();
        assert_eq!(&all, b"hello world");
    }

    #[tokio::test]
    async fn what_was_not_read_of_the_prefix_is_given_back() {
        let (_client, server) = tokio::io::duplex(64);
        let mut stream = Prefixed::new(Bytes::from_static(b"hello"), server);
        let mut first = [0u8; 3];
        stream.read_exact(&mut first).await.unwrap();
        assert_eq!(&stream.into_parts().0[..], b"lo");
    }

    #[tokio::test]
    async fn next_bytes_reads_what_came_and_nothing_at_the_end() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert_eq!(
            &next_bytes(&mut server).await.unwrap()[..],
            b"GET / HTTP/1.1\r\n"
        );
        drop(client);
        assert!(next_bytes(&mut server).await.unwrap().is_empty());
    }
}
