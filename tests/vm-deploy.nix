# Deployment: PostgreSQL 14 archiving into Barman 3.3.0, `barman check` all OK after the
# initialisation, a backup by the daily timer's service, the UI answering, the polkit rule and
# the guard against initdb into an empty data directory.
{ pkgs, self }:
let
  common = import ./vm-common.nix { inherit self; };
in
pkgs.testers.runNixOSTest {
  name = "barkeep-deploy";
  nodes.machine = common.node;
  testScript = common.prelude + ''
    start_all()
    wait_ready()

    with subtest("PostgreSQL 14 archives into Barman's incoming directory"):
        assert psql("SHOW server_version_num").startswith("14"), "not PostgreSQL 14"
        assert psql("SHOW wal_level") == "replica"
        assert psql("SHOW archive_mode") == "on"
        assert psql("SHOW archive_command") == (
            "test ! -f /var/lib/barman/pg/incoming/%f && cp %p /var/lib/barman/pg/incoming/%f"
        )
        assert psql("SHOW archive_timeout") == "15min"
        machine.succeed("test -d /var/lib/barman/pg/incoming")
        machine.succeed("test \"$(stat -c %U /var/lib/barman/pg/incoming)\" = postgres")
        machine.succeed("test \"$(stat -c %U /var/log/barman.log)\" = postgres")

    with subtest("barman check is all OK after the initialisation"):
        out = as_postgres("barman check pg")
        assert "FAILED" not in out, out
        machine.succeed("test -f /var/lib/barkeep/initdb-guard")

    with subtest("the daily timer's service makes a backup and checks it"):
        machine.succeed("systemctl list-timers --all | grep -q barman-backup.timer")
        machine.succeed("systemctl list-timers --all | grep -q barman-cron.timer")
        machine.succeed("systemctl start barman-backup.service")
        done = [b for b in backups() if b["status"] == "DONE"]
        assert len(done) == 1, backups()
        machine.succeed("systemctl start barman-cron.service")

    with subtest("WAL keeps arriving through archive_command and barman cron"):
        psql("CREATE TABLE t (id int PRIMARY KEY)")
        psql("INSERT INTO t SELECT generate_series(1, 1000)")
        as_postgres("barman switch-wal --force --archive pg")
        out = as_postgres("barman check pg")
        assert "FAILED" not in out, out

    with subtest("the UI answers"):
        machine.wait_for_open_port(8080)
        machine.succeed("curl -sSf -o /dev/null http://127.0.0.1:8080/")

    with subtest("postgres may start, stop and restart postgresql.service, nothing else"):
        as_postgres("systemctl stop postgresql.service")
        machine.fail("systemctl is-active --quiet postgresql.service")
        as_postgres("systemctl start postgresql.service")
        as_postgres("systemctl restart postgresql.service")
        machine.wait_for_unit("postgresql.service")
        machine.fail("runuser -u postgres -- systemctl stop barman-cron.timer")
        machine.fail("runuser -u postgres -- systemctl mask --runtime postgresql.service")

    with subtest("an empty data directory is never initdb'd while barkeep protects the cluster"):
        machine.succeed("systemctl stop postgresql.service")
        machine.succeed("mv /var/lib/postgresql/14 /var/lib/barkeep/aside")
        machine.succeed("install -d -m 0700 -o postgres -g postgres /var/lib/postgresql/14")
        machine.execute("systemctl start postgresql.service")  # skipped: start condition
        machine.fail("systemctl is-active --quiet postgresql.service")
        machine.succeed("test ! -e /var/lib/postgresql/14/PG_VERSION")
        machine.succeed("rmdir /var/lib/postgresql/14")
        machine.succeed("mv /var/lib/barkeep/aside /var/lib/postgresql/14")

    with subtest("postgresql-start-blocked blocks every start"):
        machine.succeed("touch /var/lib/barkeep/postgresql-start-blocked")
        machine.execute("systemctl start postgresql.service")
        machine.fail("systemctl is-active --quiet postgresql.service")
        machine.succeed("rm /var/lib/barkeep/postgresql-start-blocked")
        machine.succeed("systemctl start postgresql.service")
        machine.wait_for_unit("postgresql.service")
        assert psql("SELECT count(*) FROM t") == "1000"
  '';
}
