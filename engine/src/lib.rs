//! barkeep's domain, with no web in it: Barman's catalog, the PostgreSQL probe, service control
//! and the crash-safe restore state machine. The app and the server call into this crate; it
//! knows nothing of them.

pub mod admin;
pub mod audit;
pub mod barman;
pub mod catalog;
pub mod checks;
pub mod config;
mod engine;
pub mod offsite;
pub mod overview;
pub mod probe;
pub mod process;
pub mod restore;
pub mod service;
pub mod state_dir;
pub mod target;
pub mod transactions;
pub mod users;
pub mod validate;
pub mod wal;
pub mod waldump;
pub mod window;

pub use config::Config;
pub use engine::Engine;
