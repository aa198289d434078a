//! The size bound of one render: an in-memory writer that stops at
//! [`MAX_RENDERED_BYTES`], and the error that says a value passed it.

use minijinja::{Error, ErrorKind};

use super::MAX_RENDERED_BYTES;

/// An in-memory writer that fails once more than [`MAX_RENDERED_BYTES`]
/// would be written (then it keeps what it had, and says so).
#[derive(Debug, Default)]
pub(super) struct CappedBuffer {
    pub(super) bytes: Vec<u8>,
    pub(super) overflowed: bool,
}

impl std::io::Write for CappedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len().saturating_add(buf.len()) > MAX_RENDERED_BYTES {
            self.overflowed = true;
            return Err(std::io::Error::other(OutputTooLarge));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One value printed or serialized inside a render would exceed
/// [`MAX_RENDERED_BYTES`]; carried as the source of the minijinja error.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("a value of the template exceeds {MAX_RENDERED_BYTES} bytes")]
pub(super) struct OutputTooLarge;

impl From<OutputTooLarge> for Error {
    fn from(e: OutputTooLarge) -> Self {
        Error::new(ErrorKind::InvalidOperation, e.to_string()).with_source(e)
    }
}
