//! The time-zone trap (docs/barman.md): barkeep's process, PostgreSQL's
//! `timezone` and the session that takes the target time are in three different zones, none of
//! them UTC. The restore must still land exactly on the target.

mod common;

use barkeep_engine::target::TargetTime;
use barkeep_testkit::SandboxOptions;
use common::*;

#[test]
fn three_zones_none_utc_and_the_restore_lands_exactly_on_the_target() {
    // barkeep's own zone (and the zone barman would inherit, were it not given TZ=UTC).
    // SAFETY of set_var: this test binary has this one test, set before any thread reads TZ.
    std::env::set_var("TZ", "Asia/Kolkata");
    let (sb, engine) = stack(SandboxOptions::default().pg_timezone("America/New_York"));
    let rt = runtime();
    assert_eq!(sb.psql("SHOW timezone").trim(), "America/New_York");
    sb.psql("CREATE TABLE events (id serial, at timestamptz DEFAULT now())");
    sb.psql("INSERT INTO events DEFAULT VALUES");
    sb.barman_ok(&["backup", "--wait", "pg"]);
    sb.psql("INSERT INTO events SELECT FROM generate_series(1, 9)");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // The target as a person in Adelaide (+10:30) reads it from the database.
    let mut psql = sb.psql_command("app");
    psql.env("PGTZ", "Australia/Adelaide")
        .arg("-c")
        .arg("SELECT to_char(now(), 'YYYY-MM-DD HH24:MI:SS.US') || to_char(now(), 'TZH:TZM')");
    let out = psql.output().expect("psql");
    let local = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        local.ends_with("+10:30") || local.ends_with("+09:30"),
        "an Adelaide time: {local}"
    );
    let target: TargetTime = local.parse().expect("explicit offset");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    sb.psql("INSERT INTO events SELECT FROM generate_series(1, 5)");
    sb.psql("DELETE FROM events WHERE id < 5");

    rt.block_on(engine.start_restore(target, None))
        .expect("restore");
    assert_eq!(
        count(&sb, "events"),
        10,
        "exactly the ten rows before the target"
    );
    assert_eq!(
        sb.psql("SELECT count(*) FROM events WHERE id > 10").trim(),
        "0",
        "nothing after the target"
    );
    rt.block_on(engine.rollback()).expect("roll back");
}
