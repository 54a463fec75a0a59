//! Shared by the engine's integration tests: the real stack from the testkit, and the engine
//! built from the sandbox's own barkeep.toml.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use barkeep_engine::target::TargetTime;
use barkeep_engine::Config;
use barkeep_engine::Engine;
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

/// Starts a copy of a cluster (a kept pre-restore directory) on a private port and socket
/// directory, with archiving off (it must never write into Barman's incoming/), counts the rows
/// of `table`, and stops it again.
pub fn count_in_copy(sb: &Sandbox, dir: &std::path::Path, table: &str) -> i64 {
    let sock = tempfile::tempdir().expect("socket dir");
    let port = sb.pg_port() + 1000;
    let opts = format!(
        "-c port={port} -c listen_addresses= -c unix_socket_directories={} -c archive_mode=off",
        sock.path().display()
    );
    let log = sock.path().join("log");
    let pg_ctl = sb.pg_bin_dir().join("pg_ctl");
    let st = std::process::Command::new(&pg_ctl)
        .arg("-D")
        .arg(dir)
        .arg("-l")
        .arg(&log)
        .args(["-w", "-o", &opts, "start"])
        .status()
        .expect("pg_ctl start");
    assert!(
        st.success(),
        "the copy starts: {}",
        barkeep_testkit::tail_of(&log, 20)
    );
    let out = std::process::Command::new(sb.pg_bin_dir().join("psql"))
        .args(["-XAtq", "-h"])
        .arg(sock.path())
        .args(["-p", &port.to_string(), "-U", "postgres", "-d", "app", "-c"])
        .arg(format!("SELECT count(*) FROM {table}"))
        .output()
        .expect("psql");
    let _ = std::process::Command::new(&pg_ctl)
        .arg("-D")
        .arg(dir)
        .args(["-m", "fast", "-w", "stop"])
        .status();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("a count: {}", String::from_utf8_lossy(&out.stderr)))
}
