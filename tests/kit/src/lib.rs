//! The test kit: what the end-to-end tests (`tests/meridian/`), the bench
//! scenarios (`bench/`) and the GeoDNS fuzz test (`geodns/tests/fuzz/`)
//! share to run and talk to Meridian. It is a crate of its own, next to
//! the tests, because it is shared infrastructure rather than a benchmark;
//! it depends on the config crate (to validate topologies) and on no
//! server crate, so that the servers' own tests can use it.
//!
//! Before it there were three process harnesses, five ways of moving the
//! demo to other addresses (mostly `.replace()` on config text, which
//! silently does nothing once the text it looks for changes), three DNS
//! query builders, three DNS mutators and three temporary-directory types.
//! Now there is one of each:
//!
//! - [`process`]: a child process with its output captured, its
//!   `listening for {proto} on {addr}` lines scraped, its log replayed when
//!   a test fails, and its whole process tree killed on drop;
//! - [`roles`]: `meridian up`, `edge` and `geodns` started on a
//!   [`Topology`], each ready when its listeners say so;
//! - [`topology`]: the demo topology moved onto a private loopback block
//!   (`127.B.x.y`), changed through typed setters on the parsed TOML and
//!   validated by the config crate before any process sees it;
//! - [`dns`]: one DNS client on hickory-proto, blocking for tests and
//!   async for the bench;
//! - [`http`]: raw HTTP/1.1 exchanges, for what client libraries will not
//!   send or do not show;
//! - [`origin`]: an origin whose every answer a test scripts (and which
//!   counts what it got), and one that records raw bytes;
//! - [`mmdb`]: geo databases built byte by byte, shaped to hang what
//!   walks them;
//! - [`mutation`]: the seed corpus and mutators of DNS messages, used by
//!   the fuzz test, the hostile-input test and the flood benchmark;
//! - [`nats`]: a real `nats-server` with JetStream, for the cluster bus;
//! - [`tree`]: a process and its descendants, from `/proc`, for killing
//!   a server whole and for measuring its CPU time.
//!
//! Temporary directories are `tempfile`'s.
//!
//! The kit returns errors rather than panicking where a bench run could
//! hit them; the typed setters of [`Topology`] panic on misuse (a region
//! that does not exist), which is a bug in the caller.

pub mod browser;
pub mod dns;
mod error;
pub mod grafana;
pub mod http;
pub mod mmdb;
pub mod mutation;
pub mod nats;
pub mod origin;
pub mod process;
pub mod roles;
pub mod topology;
pub mod tree;

pub use error::{KitError, eventually, tcp_listening};
pub use origin::{Received, RecordingOrigin, Reply, ScriptedOrigin, ok};
pub use process::{Process, Ran};
pub use roles::{Edge, GeoDns, Up};
pub use topology::{RateLimit, Topology, zone_records};
