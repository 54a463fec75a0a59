# Deployment: PostgreSQL 14 archiving into Barman 3.3.0, `barman check` all OK after the
# initialisation, a backup by the daily timer's service, the UI answering, the polkit rule, the
# guard against initdb into an empty data directory (postgresql-setup skipped with it, no failed
# unit), the start timeout, and the read-only verify role.
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
        app_sql("CREATE TABLE t (id int PRIMARY KEY)")
        app_sql("INSERT INTO t SELECT generate_series(1, 1000)")
        as_postgres("barman switch-wal --force --archive pg")
        out = as_postgres("barman check pg")
        assert "FAILED" not in out, out

    with subtest("the application database belongs to app, no superuser"):
        assert psql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'app'") == "app"
        assert psql("SELECT rolsuper FROM pg_roles WHERE rolname = 'app'") == "f"

    with subtest("the verify role: LOGIN, no superuser rights, a member of app and nothing else"):
        assert psql(
            "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls"
            " FROM pg_roles WHERE rolname = 'barkeep_verify'"
        ) == "t|f|f|f|f|f"
        assert psql(
            "SELECT string_agg(g.rolname, ',') FROM pg_auth_members m"
            " JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = 'barkeep_verify'::regrole"
        ) == "app"
        for role in ["pg_read_all_data", "pg_read_server_files", "pg_write_server_files",
                     "pg_execute_server_program", "postgres"]:
            assert psql(f"SELECT pg_has_role('barkeep_verify', '{role}', 'MEMBER')") == "f", role
        assert 'verify_user = "barkeep_verify"' in machine.succeed("cat /etc/barkeep/barkeep.toml")

    with subtest("the verify role: peer + ident map from postgres, to app only, reads app's tables"):
        assert as_verify_role("SELECT current_user") == "barkeep_verify"
        assert as_verify_role("SELECT count(*) FROM t") == "1000"
        verify = "runuser -u postgres -- psql -X -U barkeep_verify"
        machine.fail(f"{verify} -d postgres -c 'SELECT 1'")
        machine.fail("runuser -u nobody -- psql -X -h /run/postgresql -U barkeep_verify -d app -c 'SELECT 1'")
        machine.fail(f"{verify} -d app -c 'SET ROLE postgres'")
        machine.fail(f"{verify} -d app -c \"SELECT pg_read_file('PG_VERSION')\"")
        machine.fail(f"{verify} -d app -c \"COPY (SELECT 1) TO PROGRAM 'touch /tmp/pwned'\"")
        machine.succeed("test ! -e /tmp/pwned")

    with subtest("postgresql.service may take an hour to become ready (a paused restore)"):
        assert machine.succeed("systemctl show -P TimeoutStartUSec postgresql.service").strip() == "1h"
        assert machine.succeed("systemctl show -P Restart postgresql.service").strip() == "always"
        assert_no_failed_units()

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
        # postgresql.target pulled in postgresql-setup.service: skipped too, not failed
        machine.fail("systemctl is-failed --quiet postgresql-setup.service")
        assert_no_failed_units()
        machine.succeed("rmdir /var/lib/postgresql/14")
        machine.succeed("mv /var/lib/barkeep/aside /var/lib/postgresql/14")

    with subtest("postgresql-start-blocked blocks every start"):
        machine.succeed("touch /var/lib/barkeep/postgresql-start-blocked")
        machine.execute("systemctl start postgresql.service")
        machine.fail("systemctl is-active --quiet postgresql.service")
        assert_no_failed_units()
        machine.succeed("rm /var/lib/barkeep/postgresql-start-blocked")
        machine.succeed("systemctl start postgresql.service")
        machine.wait_for_unit("postgresql.service")
        machine.wait_for_unit("postgresql.target")
        assert psql("SELECT count(*) FROM t") == "1000"
        assert_no_failed_units()
  '';
}
