# Shared by tests/vm-*.nix: the machine (services.barkeep as an operator sets it up) and Python
# helpers for the test scripts.
{ self }:
{
  node =
    { pkgs, ... }:
    {
      imports = [ self.nixosModules.default ];

      services.barkeep = {
        enable = true;
        database = "app";
        barman.settings.barman.log_level = "DEBUG";
      };

      environment.systemPackages = [ pkgs.curl ];
      virtualisation.memorySize = 2048;
      virtualisation.diskSize = 4096;
    };

  prelude = ''
    import json
    import re
    import shlex

    CONFIG = "/etc/barkeep/barkeep.toml"


    def as_postgres(cmd):
        return machine.succeed(f"runuser -u postgres -- {cmd}")


    def psql(sql, db="app"):
        return as_postgres(
            f"psql -X -v ON_ERROR_STOP=1 -d {db} -tAc {shlex.quote(sql)}"
        ).strip()


    def app_sql(sql):
        """SQL as the application's role `app` (the owner of the database), so that what it
        creates belongs to the application, as in production: barkeep's verify role reads it
        through its membership of `app`. psql prints the result of the last statement only."""
        return psql(f"SET ROLE app; {sql}")


    def as_verify_role(sql, db="app"):
        """SQL as barkeep's verify role, the way barkeep connects: OS user postgres, peer
        authentication through the ident map `barkeep`."""
        return as_postgres(
            f"psql -X -v ON_ERROR_STOP=1 -U barkeep_verify -d {db} -tAc {shlex.quote(sql)}"
        ).strip()


    def assert_no_failed_units():
        out = machine.succeed("systemctl --failed --no-legend --plain").strip()
        assert out == "", f"failed units:\n{out}"


    def restore(verb, *args):
        argv = ["barkeep", "restore", verb, "--config", CONFIG, *args]
        return as_postgres(" ".join(shlex.quote(a) for a in argv))


    def restore_status():
        return json.loads(restore("status"))


    def query_numbers(sql):
        """Integers in the output of `barkeep restore query` (read-only, paused server)."""
        return [int(n) for n in re.findall(r"\b\d+\b", restore("query", sql))]


    def utc_now():
        return machine.succeed("date -u +'%F %T+00:00'").strip()


    def wait_promoted():
        machine.wait_until_succeeds(
            "runuser -u postgres -- psql -X -d app -tAc 'SELECT pg_is_in_recovery()' | grep -qx f",
            timeout=120,
        )


    def backups():
        return json.loads(as_postgres("barman -f json list-backups pg"))["pg"]


    def wait_ready():
        machine.wait_for_unit("postgresql.service")
        machine.wait_for_unit("postgresql-setup.service")
        machine.wait_for_unit("barman-init.service")
        machine.wait_for_unit("barkeep.service")
  '';
}
