# Crash safety: barkeep is killed with SIGKILL in the middle of a restore (after it stopped
# PostgreSQL); `barkeep restore resume` resumes or rolls back, and nothing is lost. Then plan,
# start, retry with another target, roll back / accept. No unit may be left failed after the
# crash, the roll back, the retry or the accept (postgresql-setup is stopped, never failed, when
# barkeep stops a paused server).
{ pkgs, self }:
let
  common = import ./vm-common.nix { inherit self; };
in
pkgs.testers.runNixOSTest {
  name = "barkeep-crash";
  nodes.machine = {
    imports = [ common.node ];
    # Slow rsync down (KB/s) so that `barman recover` lasts long enough to be interrupted.
    services.barkeep.barman.serverSettings.bandwidth_limit = 2000;
  };
  testScript = common.prelude + ''
    start_all()
    wait_ready()

    with subtest("data, a backup, two target times, a harmful DELETE, a later good row"):
        app_sql("CREATE TABLE t (id int PRIMARY KEY, note text)")
        app_sql("INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 100) g")
        machine.succeed("systemctl start barman-backup.service")
        machine.sleep(2)
        early = utc_now()  # 100 rows
        machine.sleep(2)
        app_sql("INSERT INTO t SELECT g, 'row ' || g FROM generate_series(101, 120) g")
        machine.sleep(2)
        target = utc_now()  # 120 rows
        machine.sleep(2)
        app_sql("DELETE FROM t WHERE id > 10")
        app_sql("INSERT INTO t VALUES (5000, 'written after the DELETE')")
        assert psql("SELECT count(*) FROM t") == "11"

    with subtest("kill -9 barkeep in the middle of a restore"):
        machine.succeed(
            "systemd-run --unit=restore-under-test --uid=postgres --gid=postgres"
            " --setenv=PATH=/run/current-system/sw/bin"
            f" barkeep restore start --config {CONFIG} --target-time {shlex.quote(target)}"
        )
        # It stopped PostgreSQL: from here on the data directory is set aside / being recovered.
        machine.wait_until_fails("systemctl is-active --quiet postgresql.service", timeout=120)
        machine.succeed("systemctl kill --signal=KILL restore-under-test.service")
        machine.wait_until_fails("systemctl is-active --quiet restore-under-test.service")
        # That unit failed on purpose (killed by this test); nothing else may have failed.
        machine.succeed("systemctl reset-failed restore-under-test.service")
        assert_no_failed_units()

    with subtest("resume: resumed or rolled back, nothing lost"):
        restore("resume")
        machine.wait_for_unit("postgresql.service")
        status = restore_status()
        if status.get("state") == "paused":
            # resumed: the restore reached the target; the pre-restore state is still kept
            assert 120 in query_numbers("SELECT count(*) FROM t")
            restore("rollback")
        wait_promoted()
        # the state before the restore, including what was written after the DELETE
        assert psql("SELECT count(*) FROM t") == "11"
        assert psql("SELECT note FROM t WHERE id = 5000") == "written after the DELETE"
        machine.wait_for_unit("postgresql-setup.service")
        assert_no_failed_units()

    with subtest("plan, start, retry with another target, accept"):
        restore("plan", "--target-time", target)
        restore("start", "--target-time", target)
        assert restore_status()["state"] == "paused"
        assert 120 in query_numbers("SELECT count(*) FROM t")
        assert_no_failed_units()
        restore("retry", "--target-time", early)
        assert restore_status()["state"] == "paused"
        assert 100 in query_numbers("SELECT count(*) FROM t")
        # the retry stopped the paused server while postgresql-setup waited for it
        assert_no_failed_units()
        restore("accept")
        wait_promoted()
        machine.wait_for_unit("postgresql-setup.service")
        assert_no_failed_units()
        assert psql("SELECT count(*) FROM t") == "100"

    with subtest("a new backup succeeds after the restore"):
        machine.succeed("systemctl start barman-backup.service")
        out = as_postgres("barman check pg")
        assert "FAILED" not in out, out
        assert_no_failed_units()
  '';
}
