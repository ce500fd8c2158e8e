//! Edge sync, edge side: which image ids this edge must refuse or mark,
//! kept current from the control plane (wire format in
//! [`imgcdn_shared::sync`]).
//!
//! - [`Visibility`] holds the applied state: an immutable map swapped whole
//!   with `arc-swap`, so a request reads it without any lock.
//! - [`SyncTask`] is a pingora background service: it long-polls
//!   `changes`, falls back to a `snapshot` when told to (or when it has no
//!   state), applies each batch as a new map, purges every cached copy of an
//!   id that is taken down or hidden, persists the state (write to a
//!   temporary file, fsync, rename) and only then acknowledges the sequence.
//! - The persisted state is loaded before the edge serves its first request,
//!   so an edge restarted while the control plane is unreachable still
//!   enforces every takedown it knew (fail closed). An edge with no state
//!   at all is not ready, and answers 503, unless config allows serving.

mod task;
pub mod visibility;

pub use task::SyncTask;
pub use visibility::{persist, Applied, Visibility};
