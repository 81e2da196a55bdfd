//! `spenza listen`: a developer's machine receives a source's events as they arrive, over a
//! WebSocket it opens to the relay, and forwards each to a local URL; nothing on the relay
//! connects to it. The relay delivers to it as to any endpoint, through a subscription of kind
//! `cli` whose deliveries wait, durably, in a queue of their own until a session takes them.

pub mod cli;
pub mod protocol;
mod session;

pub use session::{ListenConfig, Session};
