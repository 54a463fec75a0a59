//! barkeep's domain, with no web in it: Barman's catalog, the PostgreSQL probe, service control
//! and the crash-safe restore state machine. The app and the server call into this crate; it
//! knows nothing of them.

pub mod config;
pub mod probe;
pub mod validate;

pub use config::Config;
