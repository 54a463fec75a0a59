//! Finding the mistake (issue 12) against the real PostgreSQL 14 + Barman 3.3.0: the
//! transactions listed from Barman's WAL (gzip archived and plain in incoming/), named from the
//! catalog and the name book, and restores to just before and just after one of them.

mod common;

use std::time::Duration;

use barkeep_engine::restore::{Phase, Step};
use barkeep_engine::target::Side;
use barkeep_engine::transactions::list::EffectView;
use barkeep_engine::transactions::{TransactionList, TransactionView};
use barkeep_testkit::{Sandbox, SandboxOptions};
use chrono::Utc;
use common::*;

fn list_last(
    engine: &barkeep_engine::Engine,
    rt: &tokio::runtime::Runtime,
    minutes: i64,
) -> TransactionList {
    let now = Utc::now();
    rt.block_on(engine.transactions(now - chrono::Duration::minutes(minutes), now))
        .expect("the transactions are listed")
}

fn only<'a>(list: &'a TransactionList, what: &str) -> &'a TransactionView {
    let found: Vec<&TransactionView> = list
        .transactions
        .iter()
        .filter(|t| t.line.contains(what))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "exactly one transaction {what:?} in:\n{}",
        lines(list)
    );
    found[0]
}

fn lines(list: &TransactionList) -> String {
    list.transactions
        .iter()
        .map(|t| t.line.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs each statement in its own transaction on one connection, one right after the other.
fn psql_each(sb: &Sandbox, statements: &[&str]) {
    let mut cmd = sb.psql_command("app");
    for s in statements {
        cmd.arg("-c").arg(s);
    }
    let out = cmd.output().expect("psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sleeps to just after the start of the next second: what follows within a few
/// milliseconds commits in one second.
fn start_of_a_second() {
    let ms = Utc::now().timestamp_subsec_millis();
    std::thread::sleep(Duration::from_millis(u64::from(1000 - ms) + 20));
}

fn detail(status: &barkeep_engine::restore::RestoreStatus, step: Step) -> String {
    status
        .steps
        .iter()
        .rev()
        .find(|s| s.step == step)
        .and_then(|s| s.detail.clone())
        .unwrap_or_default()
}

/// A DELETE among other transactions committed in the same second: "just before" it keeps
/// exactly what committed before it (the other transactions of that second included), "just
/// after" it adds it and nothing later. A second listing decodes nothing again.
#[test]
fn just_before_and_just_after_a_delete_among_others_of_the_same_second() {
    let (sb, engine) = stack(SandboxOptions::default());
    let rt = runtime();
    sb.psql("CREATE TABLE ledger (id serial PRIMARY KEY, note text NOT NULL)");
    sb.psql("ALTER TABLE ledger OWNER TO app");
    sb.psql("INSERT INTO ledger (note) SELECT 'first ' || g FROM generate_series(1, 100) g");
    sb.barman_ok(&["backup", "--wait", "pg"]);
    start_of_a_second();
    psql_each(
        &sb,
        &[
            "INSERT INTO ledger (note) VALUES ('same second, before')",
            "DELETE FROM ledger WHERE id <= 40",
            "INSERT INTO ledger (note) VALUES ('same second, after')",
        ],
    );
    sb.psql("INSERT INTO ledger (note) VALUES ('a second later')");
    sb.barman_ok(&["switch-wal", "--force", "--archive", "pg"]);

    let list = list_last(&engine, &rt, 10);
    let harm = only(&list, "DELETE 40 rows from ledger");
    assert!(harm.suspicious, "the delete is among the suspicious ones");
    assert!(harm.committed);
    let at = list
        .transactions
        .iter()
        .position(|x| x.xid == harm.xid)
        .expect("listed");
    // The three of that second, in commit order, all in one second.
    let of_that_second = &list.transactions[at.saturating_sub(1)..=at + 1];
    for t in [&of_that_second[0], &of_that_second[2]] {
        assert!(
            t.line.contains("INSERT 1 row into ledger"),
            "{}",
            lines(&list)
        );
    }
    let secs: Vec<i64> = of_that_second
        .iter()
        .map(|t| t.ended_at.timestamp())
        .collect();
    assert!(
        secs.iter().all(|s| *s == secs[0]),
        "one second: {}",
        lines(&list)
    );
    assert!(list.segments > 0 && list.decoded > 0);
    // The same range again: every segment is known, none is decoded.
    let runs = engine.transaction_log().waldump_runs();
    let again = list_last(&engine, &rt, 10);
    assert_eq!(again.decoded, 0);
    assert_eq!(engine.transaction_log().waldump_runs(), runs);
    assert_eq!(again.find(harm.xid).map(|t| &t.line), Some(&harm.line));

    // Just before the delete: the 100 rows and the insert of that second before it.
    let target = rt
        .block_on(engine.transaction_target(harm.xid, Side::Before))
        .expect("the transaction is a target");
    let status = rt
        .block_on(engine.start_restore(target, None))
        .expect("restore to just before the delete");
    assert_eq!(status.state, Phase::Paused);
    assert_eq!(count(&sb, "ledger"), 101);
    assert_eq!(
        sb.psql("SELECT count(*) FROM ledger WHERE note = 'same second, before'"),
        "1"
    );
    assert_eq!(
        sb.psql("SELECT count(*) FROM ledger WHERE note LIKE 'same second, after'"),
        "0"
    );
    let proof = detail(&status, Step::StartPaused);
    assert!(
        proof.contains(&format!("just before transaction {}", harm.xid)),
        "{proof}"
    );

    // Just after it: the delete applied, the insert after it in the same second not.
    let target = rt
        .block_on(engine.transaction_target(harm.xid, Side::After))
        .expect("the transaction is a target");
    let status = rt
        .block_on(engine.retry(target, None))
        .expect("retry to just after the delete");
    assert_eq!(status.state, Phase::Paused);
    assert_eq!(count(&sb, "ledger"), 61);
    assert_eq!(
        sb.psql("SELECT count(*) FROM ledger WHERE note LIKE 'same second, after'"),
        "0"
    );
    assert!(detail(&status, Step::StartPaused)
        .contains(&format!("just after transaction {}", harm.xid)));

    // An xid the WAL does not hold is refused before anything runs.
    let e = rt
        .block_on(engine.transaction_target(4_000_000_000, Side::Before))
        .expect_err("unknown xid");
    assert!(e.to_string().contains("does not end in the WAL"), "{e}");

    let done = rt.block_on(engine.rollback()).expect("roll back");
    assert_eq!(done.state, Phase::Closed);
    assert_eq!(count(&sb, "ledger"), 63, "the database as it was");
}

/// TRUNCATE and DROP TABLE are found and named (the dropped table by the name barkeep saw
/// before), a transaction that spans WAL segments is counted whole, both a gzip segment of
/// Barman's and a plain one still in incoming/ are read, and restoring to just before the DROP
/// brings the table back.
#[test]
fn truncate_and_drop_are_named_and_a_drop_is_undone() {
    let (sb, engine) = stack(SandboxOptions::default());
    let rt = runtime();
    for t in ["emptied", "doomed", "big"] {
        sb.psql(&format!(
            "CREATE TABLE {t} (id int PRIMARY KEY, pad text NOT NULL)"
        ));
        sb.psql(&format!("ALTER TABLE {t} OWNER TO app"));
    }
    sb.psql("INSERT INTO emptied SELECT g, 'e' FROM generate_series(1, 300) g");
    sb.psql("INSERT INTO doomed SELECT g, 'd' FROM generate_series(1, 500) g");
    sb.barman_ok(&["backup", "--wait", "pg"]);
    // barkeep reads the names while the tables exist (a listing, a plan, the server's
    // background check all do).
    rt.block_on(engine.remember_relation_names());
    let doomed_file: u32 = sb
        .psql("SELECT relfilenode FROM pg_class WHERE relname = 'doomed'")
        .parse()
        .expect("a relfilenode");

    // ~40 MB of WAL in one transaction: it spans at least two segments.
    sb.psql("INSERT INTO big SELECT g, repeat('x', 1200) FROM generate_series(1, 30000) g");
    sb.psql("TRUNCATE emptied");
    sb.psql("DROP TABLE doomed");
    sb.barman_ok(&["switch-wal", "--force", "--archive", "pg"]);
    // One more transaction, left in incoming/ (plain, not yet processed by Barman).
    sb.psql("INSERT INTO big VALUES (0, 'in incoming')");
    let incoming = sb.barman_home().join("pg").join("incoming");
    let before_switch: Vec<_> = std::fs::read_dir(&incoming)
        .expect("incoming/")
        .flatten()
        .collect();
    assert!(before_switch.is_empty(), "incoming/ starts empty");
    sb.psql("SELECT pg_switch_wal()");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::fs::read_dir(&incoming)
        .expect("incoming/")
        .flatten()
        .next()
        .is_none()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "archive_command delivers the segment"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let list = list_last(&engine, &rt, 15);
    let spanning = only(&list, "INSERT 30,000 rows into big");
    assert!(spanning.committed);
    assert!(
        list.segments >= 3,
        "several segments read: {}",
        list.segments
    );
    let truncate = only(&list, "TRUNCATE or rewrite of emptied");
    assert!(truncate.suspicious);
    let drop = only(&list, "DROP of doomed");
    assert!(drop.suspicious);
    let dropped = drop
        .effects
        .iter()
        .find_map(|e| match e {
            EffectView::Drop { relations } => relations.first().cloned(),
            _ => None,
        })
        .expect("the drop names its table");
    assert_eq!(dropped.name.as_deref(), Some("doomed"));
    assert!(dropped.gone, "no longer in the catalog");
    assert_eq!(dropped.relfilenode, doomed_file);
    // The transaction still in incoming/ is read too.
    only(&list, "INSERT 1 row into big");

    // Just before the DROP: the table is back, with its rows; the TRUNCATE before it applied.
    let target = rt
        .block_on(engine.transaction_target(drop.xid, Side::Before))
        .expect("the drop is a target");
    let status = rt
        .block_on(engine.start_restore(target, None))
        .expect("restore to just before the drop");
    assert_eq!(status.state, Phase::Paused);
    // The DROP held its table locked until its commit: the stop is before its first record,
    // so the table can be read while paused.
    let proof = detail(&status, Step::StartPaused);
    assert!(
        proof.contains(&format!(
            "just before transaction {} (its first record",
            drop.xid
        )),
        "{proof}"
    );
    assert!(status
        .plan
        .warnings
        .iter()
        .any(|w| w.contains("nothing else is left out")));
    let q = rt
        .block_on(engine.query("SELECT count(*) FROM doomed", 10))
        .expect("the table is readable while paused");
    assert_eq!(q.rows, vec![vec![Some("500".to_owned())]]);
    assert_eq!(count(&sb, "doomed"), 500);
    assert_eq!(count(&sb, "emptied"), 0);
    assert_eq!(count(&sb, "big"), 30000);
    let done = rt.block_on(engine.accept()).expect("accept");
    assert_eq!(done.state, Phase::Closed);
    assert_eq!(
        count(&sb, "doomed"),
        500,
        "the dropped table is back for good"
    );
}
