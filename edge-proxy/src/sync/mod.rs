//! Edge sync, edge side: which image ids this edge must refuse or mark,
//! kept current from the control plane (wire format in
//! [`imgcdn_shared::sync`]).
//!
//! - [`Visibility`] holds the applied state: an immutable value swapped
//!   whole with `arc-swap`, so a request reads it without any lock; a batch
//!   copies only a small overlay of recent changes, not the whole map.
//! - [`SyncTask`] is a pingora background service: it long-polls
//!   `changes`, falls back to a `snapshot` when told to (or when it has no
//!   state), applies each batch as a new map, purges every cached copy of an
//!   id that is taken down or hidden, persists what it applied (one record
//!   appended to a log, fsynced; the log is folded into a snapshot file from
//!   time to time: [`state`]) and only then acknowledges the sequence. It
//!   also drops `hide` entries whose purpose is served (see [`task`]).
//! - The persisted state is loaded before the edge serves its first request,
//!   so an edge restarted while the control plane is unreachable still
//!   enforces every takedown it knew (fail closed). An edge with no state
//!   at all is not ready, and answers 503, unless config allows serving.

pub mod applied;
pub mod state;
pub mod task;
pub mod visibility;

pub use applied::{Applied, Entry, Op};
pub use state::StateFiles;
pub use task::SyncTask;
pub use visibility::Visibility;
