//! A guest's stdout and stderr, as the operator's log sees them: one log
//! event per line, tagged with the tenant, app and component that wrote it,
//! with control characters escaped. A guest can therefore never forge a log
//! line of the gateway's or of another tenant's, whatever bytes it writes.
//!
//! Lines longer than [`MAX_LINE_BYTES`] are logged in pieces; a partial last
//! line is logged when the stream goes away.

use crate::metrics::ComponentLabels;
use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// The longest piece of output logged as one event.
pub(crate) const MAX_LINE_BYTES: usize = 4096;

/// The log target of guest output, for filtering (`OKRA_LOG=okra::guest=off`).
pub(crate) const TARGET: &str = "okra::guest";

/// Which stream a guest wrote to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GuestStream {
    Stdout,
    Stderr,
}

impl GuestStream {
    fn name(self) -> &'static str {
        match self {
            GuestStream::Stdout => "stdout",
            GuestStream::Stderr => "stderr",
        }
    }
}

/// What a component's `WasiCtx` gets for stdout or stderr.
#[derive(Clone)]
pub(crate) struct GuestOutput {
    labels: Arc<ComponentLabels>,
    stream: GuestStream,
}

impl GuestOutput {
    pub(crate) fn new(labels: Arc<ComponentLabels>, stream: GuestStream) -> Self {
        GuestOutput { labels, stream }
    }

    fn writer(&self) -> LineWriter<impl FnMut(&[u8]) + Send + Sync + 'static> {
        let output = self.clone();
        LineWriter::new(move |line: &[u8]| output.log(line))
    }

    fn log(&self, line: &[u8]) {
        let text = escape(line);
        let labels = &self.labels;
        tracing::info!(
            target: TARGET,
            tenant = %labels.tenant,
            app = %labels.app,
            component = %labels.component,
            stream = self.stream.name(),
            "{text}"
        );
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.writer())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.writer())
    }
}

/// Collects bytes into lines and hands each whole one to `sink`.
struct LineWriter<F: FnMut(&[u8])> {
    sink: F,
    pending: Vec<u8>,
}

impl<F: FnMut(&[u8])> LineWriter<F> {
    fn new(sink: F) -> Self {
        LineWriter {
            sink,
            pending: Vec::new(),
        }
    }

    fn push(&mut self, mut bytes: &[u8]) {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            self.pending.extend_from_slice(&bytes[..end]);
            self.emit();
            bytes = &bytes[end + 1..];
        }
        self.pending.extend_from_slice(bytes);
        while self.pending.len() >= MAX_LINE_BYTES {
            let rest = self.pending.split_off(MAX_LINE_BYTES);
            self.emit();
            self.pending = rest;
        }
    }

    fn emit(&mut self) {
        let line = std::mem::take(&mut self.pending);
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        (self.sink)(line);
    }
}

impl<F: FnMut(&[u8])> Drop for LineWriter<F> {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            self.emit();
        }
    }
}

impl<F: FnMut(&[u8]) + Send + Sync + 'static> OutputStream for LineWriter<F> {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl<F: FnMut(&[u8]) + Send + Sync + 'static> Pollable for LineWriter<F> {
    async fn ready(&mut self) {}
}

impl<F: FnMut(&[u8]) + Unpin> AsyncWrite for LineWriter<F> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// `bytes` as text with every control character (and invalid UTF-8)
/// escaped, so one guest line is one log line.
fn escape(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape(b"plain text"), "plain text");
        assert_eq!(
            escape(b"x\r2026-12-01 INFO forged\x1b[31m"),
            "x\\r2026-12-01 INFO forged\\u{1b}[31m"
        );
        assert_eq!(escape("héllo".as_bytes()), "héllo");
        assert_eq!(escape(b"bad \xff utf8"), "bad \u{fffd} utf8");
    }

    /// The lines a writer hands on for these writes, the last one when it drops.
    fn lines_of(writes: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        let mut writer = LineWriter::new(|line: &[u8]| lines.push(line.to_vec()));
        for write in writes {
            writer.push(write);
        }
        drop(writer);
        lines
    }

    #[test]
    fn output_is_split_into_lines_and_capped() {
        let lines = lines_of(&[b"one\ntw", b"o\r\n", b"\nthree"]);
        assert_eq!(lines, [&b"one"[..], b"two", b"", b"three"]);
        let long = vec![b'x'; 2 * MAX_LINE_BYTES + 10];
        let lines = lines_of(&[&long, b"\n"]);
        let sizes: Vec<usize> = lines.iter().map(Vec::len).collect();
        assert_eq!(sizes, [MAX_LINE_BYTES, MAX_LINE_BYTES, 10]);
        assert!(lines_of(&[]).is_empty());
    }
}
