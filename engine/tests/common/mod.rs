//! Shared by the engine's integration tests: the real stack from the testkit, and the engine
//! built from the sandbox's own barkeep.toml.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use barkeep_engine::restore::Engine;
use barkeep_engine::target::TargetTime;
use barkeep_engine::Config;
use barkeep_testkit::{Sandbox, SandboxOptions};

pub fn stack(opts: SandboxOptions) -> (Sandbox, Engine) {
    let sb = Sandbox::up(opts);
    let config = Config::load(&sb.config_path()).expect("the sandbox writes a valid barkeep.toml");
    let engine = Engine::new(Arc::new(config)).expect("engine");
    (sb, engine)
}

/// A moment strictly between two writes: wait, take the time, wait.
pub fn mark_time() -> TargetTime {
    std::thread::sleep(Duration::from_millis(1100));
    let t = TargetTime::new(chrono::Utc::now());
    std::thread::sleep(Duration::from_millis(1100));
    t
}

pub fn count(sb: &Sandbox, table: &str) -> i64 {
    sb.psql(&format!("SELECT count(*) FROM {table}"))
        .trim()
        .parse()
        .expect("a count")
}

/// A checksum of a table's whole contents.
pub fn checksum(sb: &Sandbox, table: &str) -> String {
    sb.psql(&format!(
        "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t"
    ))
    .trim()
    .to_owned()
}

pub fn in_recovery(sb: &Sandbox) -> bool {
    sb.psql("SELECT pg_is_in_recovery()").trim() == "t"
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
