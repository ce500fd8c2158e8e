//! The edge's clock is the shared one: expiry is the only decision the edge
//! takes on wall-clock time.

pub use imgcdn_shared::clock::{system, Clock, SystemClock};

#[cfg(test)]
pub(crate) mod test_support {
    pub use imgcdn_shared::clock::ManualClock;
}
