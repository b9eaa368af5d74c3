//! How one request ended: the status sent, and whether its connection may
//! carry another. Every way through the edge ends in one, and the edge counts
//! each request from it.

/// How one request ended.
pub(crate) struct Outcome {
    /// The status sent, or the one being sent when the connection broke.
    pub(crate) status: u16,
    /// False when the connection must not be reused.
    pub(crate) reusable: bool,
}

impl Outcome {
    /// An answer whose connection closes after it, whatever the write did.
    pub(crate) fn closing(self) -> Outcome {
        Outcome {
            reusable: false,
            ..self
        }
    }
}
