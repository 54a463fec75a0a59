# Point-in-time restore through the barkeep CLI (over the engine): data, backup, a target time,
# a harmful DELETE, restore to the target (paused; postgresql-setup waits, nothing fails; the
# verify role reads but cannot move the server), accept; then the rows are back, postgresql-setup
# finishes, WAL of the new timeline reaches Barman and a new backup succeeds.
{ pkgs, self }:
let
  common = import ./vm-common.nix { inherit self; };
in
pkgs.testers.runNixOSTest {
  name = "barkeep-pitr";
  nodes.machine = common.node;
  testScript = common.prelude + ''
    start_all()
    wait_ready()

    with subtest("data, a backup, the target time, a harmful DELETE"):
        app_sql("CREATE TABLE t (id int PRIMARY KEY, note text)")
        app_sql("INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 100) g")
        machine.succeed("systemctl start barman-backup.service")
        app_sql("INSERT INTO t SELECT g, 'row ' || g FROM generate_series(101, 120) g")
        machine.sleep(2)
        target = utc_now()
        machine.sleep(2)
        app_sql("DELETE FROM t WHERE id > 10")
        assert psql("SELECT count(*) FROM t") == "10"

    with subtest("plan is a dry run"):
        restore("plan", "--target-time", target)
        assert psql("SELECT count(*) FROM t") == "10"
        assert psql("SELECT pg_is_in_recovery()") == "f"

    with subtest("restore start: recovered to the target and paused"):
        restore("start", "--target-time", target)
        status = restore_status()
        assert status["state"] == "paused", status
        assert 120 in query_numbers("SELECT count(*) FROM t")
        assert psql("SELECT pg_get_wal_replay_pause_state()") == "paused"

    with subtest("while paused: postgresql-setup waits (no failure), postgresql.target not reached"):
        machine.wait_until_succeeds(
            "test \"$(systemctl show -P ActiveState postgresql-setup.service)\" = activating", timeout=60
        )
        machine.fail("systemctl is-active --quiet postgresql.target")
        assert_no_failed_units()

    with subtest("while paused: the verify role reads, but cannot resume, promote or escape"):
        assert as_verify_role("SELECT count(*) FROM t") == "120"
        verify = "runuser -u postgres -- psql -X -U barkeep_verify -d app -c"
        for sql in ["SELECT pg_wal_replay_resume()", "SELECT pg_promote()", "SET ROLE postgres",
                    "CHECKPOINT", "COPY (SELECT 1) TO PROGRAM 'touch /tmp/pwned'"]:
            machine.fail(f"{verify} {shlex.quote(sql)}")
        machine.succeed("test ! -e /tmp/pwned")
        assert psql("SELECT pg_is_in_recovery()") == "t"
        assert psql("SELECT pg_get_wal_replay_pause_state()") == "paused"
        assert restore_status()["state"] == "paused"

    with subtest("accept: the rows are back, promoted on a new timeline"):
        restore("accept")
        wait_promoted()
        machine.wait_for_unit("postgresql-setup.service")
        machine.wait_for_unit("postgresql.target")
        assert_no_failed_units()
        assert psql("SELECT count(*) FROM t") == "120"
        assert psql("SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)") == "00000002"
        assert psql("SHOW archive_command") == (
            "test ! -f /var/lib/barman/pg/incoming/%f && cp %p /var/lib/barman/pg/incoming/%f"
        )

    with subtest("WAL of the new timeline is archived into Barman"):
        app_sql("INSERT INTO t VALUES (1000, 'after the restore')")
        as_postgres("barman switch-wal --force --archive pg")
        machine.wait_until_succeeds(
            "grep -qE '^00000002[0-9A-F]{16}\\s' /var/lib/barman/pg/wals/xlog.db", timeout=120
        )

    with subtest("a new backup succeeds"):
        machine.succeed("systemctl start barman-backup.service")
        done = [b for b in backups() if b["status"] == "DONE"]
        assert len(done) == 2, backups()
        out = as_postgres("barman check pg")
        assert "FAILED" not in out, out
        assert_no_failed_units()
  '';
}
