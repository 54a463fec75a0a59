//! The recovery window read through the engine's cache, on the real stack: a burst of 200
//! concurrent dashboard reads runs pg_waldump at most once per segment that has to be decoded,
//! a WAL switch decodes only the new segment(s), and the cached answer is always the one the
//! uncached computation gives. Asserted on the engine's pg_waldump counter, never on time.

mod common;

use std::collections::HashSet;

use barkeep_engine::window::{self, candidates, RecoveryWindow};
use barkeep_engine::Engine;
use barkeep_testkit::{Sandbox, SandboxOptions};
use common::*;

const CALLERS: usize = 200;

/// 200 concurrent callers, half through `overview()` and half through `recovery_window()`.
fn burst(rt: &tokio::runtime::Runtime, engine: &Engine) -> Vec<RecoveryWindow> {
    rt.block_on(async {
        let tasks: Vec<_> = (0..CALLERS)
            .map(|i| {
                let engine = engine.clone();
                tokio::spawn(async move {
                    if i % 2 == 0 {
                        let o = engine.overview().await;
                        o.barman.expect("catalog").window.expect("window")
                    } else {
                        engine.recovery_window().await.expect("window")
                    }
                })
            })
            .collect();
        let mut out = Vec::with_capacity(CALLERS);
        for t in tasks {
            out.push(t.await.expect("task"));
        }
        out
    })
}

/// The uncached answer, and how many segments it had to decode (newest first, until one held a
/// transaction).
fn uncached(rt: &tokio::runtime::Runtime, engine: &Engine) -> (RecoveryWindow, usize) {
    let catalog = engine.catalog().expect("catalog");
    let bin = engine.config().postgres.bin_dir.clone();
    rt.block_on(async {
        let window = window::recovery_window(&catalog, &bin)
            .await
            .expect("uncached window");
        let mut walked = 0;
        for c in candidates(&catalog) {
            walked += 1;
            let last = barkeep_engine::waldump::last_xact_in_segment(&c.segment, &c.path, &bin)
                .await
                .expect("decode");
            if last.is_some() {
                break;
            }
        }
        (window, walked)
    })
}

fn insert_and_archive(sb: &Sandbox, value: i32) {
    sb.psql(&format!("INSERT INTO t VALUES ({value})"));
    sb.barman_ok(&["switch-wal", "--force", "--archive", "pg"]);
}

#[test]
fn concurrent_reads_decode_each_segment_once_and_a_switch_only_the_new_ones() {
    let (sb, engine) = stack(SandboxOptions::default());
    let rt = runtime();
    sb.psql("CREATE TABLE t (id int)");
    sb.barman_ok(&["backup", "--wait", "pg"]);
    insert_and_archive(&sb, 1);
    assert_eq!(engine.waldump_runs(), 0);

    // 200 at once: every answer is the uncached one, and each segment walked is decoded once.
    let windows = burst(&rt, &engine);
    let (expected, walked) = uncached(&rt, &engine);
    assert!(expected.latest.is_some(), "{expected:?}");
    assert!(windows.iter().all(|w| *w == expected), "{expected:?}");
    let first = engine.waldump_runs();
    assert_eq!(
        first, walked as u64,
        "{CALLERS} concurrent reads ran pg_waldump {first} times for {walked} segment(s)"
    );

    // Nothing new: another burst decodes nothing.
    let windows = burst(&rt, &engine);
    assert!(windows.iter().all(|w| *w == expected));
    assert_eq!(engine.waldump_runs(), first);

    // A new commit and a WAL switch: the cache notices, and only new segments are decoded.
    let before: HashSet<String> = sb.archived_wal().into_iter().collect();
    insert_and_archive(&sb, 2);
    let new_segments = sb
        .archived_wal()
        .into_iter()
        .filter(|n| !before.contains(n) && barkeep_engine::wal::WalSegment::parse(n).is_some())
        .count();
    assert!(new_segments >= 1, "the switch archived no new segment");
    let windows = burst(&rt, &engine);
    let (expected_now, _) = uncached(&rt, &engine);
    assert!(
        windows.iter().all(|w| *w == expected_now),
        "{expected_now:?}"
    );
    assert!(
        expected_now.latest > expected.latest,
        "the window did not move: {expected:?} -> {expected_now:?}"
    );
    let second = engine.waldump_runs() - first;
    assert!(
        (1..=new_segments as u64).contains(&second),
        "after a switch that archived {new_segments} new segment(s), {CALLERS} reads ran \
         pg_waldump {second} times"
    );
    assert_ne!(expected_now.latest_segment, expected.latest_segment);
}
