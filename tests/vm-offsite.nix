# Off-site copies (issue 15) on NixOS: node `store` runs nixpkgs' services.garage (Garage 2.x,
# one node) as the S3-compatible off-site store; node `db` runs barkeep with
# services.barkeep.offsite pointing at http://store:3900, its key under /run/keys. A backup and
# the WAL reach the bucket (barkeep offsite status: zero lag; barman-cloud-backup-list and
# barkeep offsite list read them back); with Garage stopped, Barman's local archiving goes on,
# the failed runs say why and the lag grows; with Garage back the lag drains to zero.
#
# Written and checked offline only (scripts/nix-check: the machines evaluate through the real
# module with no failed assertion, the Python compiles and uses no undefined name): it has never
# run, since this machine has no Nix cache to build the VMs. Run it with
# `nix build .#checks.x86_64-linux.vm-offsite` (or `nix flake check`) on a machine that has one.
{ pkgs, self }:
let
  common = import ./vm-common.nix { inherit self; };

  # Test-only secrets (in the world-readable store, which is fine for a throw-away VM): Garage's
  # RPC secret (32 bytes, hex) and the S3 key imported into Garage and written on `db` as the
  # credentials file (Garage key ids are GK + 12 bytes in hex, secrets 32 bytes in hex).
  rpcSecret = "5c1915fa04d0b6739675c61bf5907eb0fe3d9c69850c83820f51b4d25d13868c";
  keyId = "GK0123456789abcdef01234567";
  keySecret = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

  bucketUrl = "s3://barkeep/vm-db";
  credentialsFile = "/run/keys/barkeep-offsite";
in
pkgs.testers.runNixOSTest {
  name = "barkeep-offsite";

  nodes.store =
    { pkgs, ... }:
    {
      services.garage = {
        enable = true;
        package = pkgs.garage_2;
        settings = {
          replication_factor = 1;
          db_engine = "lmdb";
          rpc_bind_addr = "[::]:3901";
          rpc_public_addr = "127.0.0.1:3901";
          rpc_secret = rpcSecret;
          s3_api = {
            s3_region = "garage";
            api_bind_addr = "[::]:3900";
            root_domain = ".s3.garage";
          };
        };
      };
      networking.firewall.allowedTCPPorts = [ 3900 ];
      # Garage refuses to start with less than 1 GiB free (as nixpkgs' own Garage tests say).
      virtualisation.diskSize = 2048;
    };

  nodes.db = {
    imports = [ common.node ];
    services.barkeep.offsite = {
      enable = true;
      endpointUrl = "http://store:3900";
      inherit bucketUrl credentialsFile;
      region = "garage";
      interval = 5;
    };
  };

  testScript = common.prelude + ''
    import time

    # Two nodes: the driver defines no `machine`; the prelude's helpers act on the database host.
    machine = db

    KEY_ID = "${keyId}"
    KEY_SECRET = "${keySecret}"
    CREDENTIALS = "${credentialsFile}"
    BUCKET_URL = "${bucketUrl}"
    ENDPOINT = "http://store:3900"
    # The key as an operator gives it to Barman's cloud tools by hand (barkeep does the same).
    CLOUD_ENV = (
        f"AWS_SHARED_CREDENTIALS_FILE={CREDENTIALS} AWS_CONFIG_FILE=/dev/null"
        " AWS_DEFAULT_REGION=garage"
    )


    def garage(args):
        return store.succeed(f"garage {args}").strip()


    def offsite_status():
        """What the last replication run of barkeep.service found and did (offsite.json), or
        None before the first one."""
        code, out = db.execute(f"runuser -u postgres -- barkeep offsite status --config {CONFIG}")
        return json.loads(out) if code == 0 else None


    def wait_offsite(what, ok, timeout=300):
        """Polls `barkeep offsite status` until ok(status) holds."""
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            status = offsite_status()
            if status is not None and ok(status):
                return status
            db.sleep(2)
        raise AssertionError(f"{what}: not within {timeout} s; last status: {status}")


    def in_sync(status):
        lag = status["lag"]
        return (
            status["error"] is None
            and lag is not None
            and lag["missing_wals"] == 0
            and lag["missing_backups"] == 0
            and lag["newest_offsite_wal"] == lag["newest_local_wal"]
        )


    def local_wals():
        """The WAL files in Barman's catalog (xlog.db), oldest first."""
        text = db.succeed("cat /var/lib/barman/pg/wals/xlog.db")
        return [line.split()[0] for line in text.splitlines() if line.strip()]


    def new_wal():
        """Writes a little and closes the WAL segment; returns once Barman has archived it."""
        app_sql("INSERT INTO t SELECT g FROM generate_series(1, 1000) g")
        as_postgres("barman switch-wal --force --archive pg")


    def cloud_backups():
        """The bucket's backups as Barman's own barman-cloud-backup-list reads them."""
        out = db.succeed(
            f"{CLOUD_ENV} barman-cloud-backup-list --cloud-provider aws-s3"
            f" --endpoint-url {ENDPOINT} --format json {BUCKET_URL} pg"
        )
        return json.loads(out)["backups_list"]


    def assert_no_failed_units_on(node):
        out = node.succeed("systemctl --failed --no-legend --plain").strip()
        assert out == "", f"{node.name}: failed units:\n{out}"


    start_all()

    with subtest("store: a one-node Garage with the bucket and a key that may use it"):
        store.wait_for_unit("garage.service")
        store.wait_for_open_port(3900)
        node_id = garage("node id -q").split("@")[0]
        garage(f"layout assign -z vm -c 1G {node_id}")
        garage("layout apply --version 1")
        garage(f"key import --yes -n barkeep {KEY_ID} {KEY_SECRET}")
        garage("bucket create barkeep")
        garage("bucket allow --read --write --owner barkeep --key barkeep")

    with subtest("db: the key deployed under /run/keys, readable by barkeep.service only"):
        wait_ready()
        db.succeed(f"install -m 0600 -o postgres -g postgres /dev/null {CREDENTIALS}")
        db.succeed(
            f"printf '[default]\\naws_access_key_id = %s\\naws_secret_access_key = %s\\n'"
            f" {KEY_ID} {KEY_SECRET} > {CREDENTIALS}"
        )
        assert db.succeed(f"stat -c '%U %a' {CREDENTIALS}").strip() == "postgres 600"
        # /run/keys is root:keys 0750: postgres reaches it only with the group the module
        # gives barkeep.service.
        assert db.succeed("systemctl show -P SupplementaryGroups barkeep.service").strip() == "keys"
        db.fail(f"runuser -u postgres -- test -r {CREDENTIALS}")
        db.succeed(f"runuser -u postgres -g postgres -G keys -- test -r {CREDENTIALS}")
        # Garage answers (403 to an anonymous request): the store is reachable from db.
        db.wait_until_succeeds("curl -s -o /dev/null http://store:3900/", timeout=60)

    with subtest("a backup and the WAL reach the bucket: zero lag"):
        app_sql("CREATE TABLE t (id int)")
        db.succeed("systemctl start barman-backup.service")
        backup_id = max(b["backup_id"] for b in backups() if b["status"] == "DONE")
        new_wal()
        status = wait_offsite(
            "in sync with the backup", lambda s: in_sync(s) and backup_id in s["offsite_backups"]
        )
        assert status["lag"]["newest_local_wal"] == local_wals()[-1], (status, local_wals()[-1])
        assert_no_failed_units()

    with subtest("the bucket holds them: barman-cloud-backup-list, barkeep offsite list"):
        done = [b["backup_id"] for b in cloud_backups() if b["status"] == "DONE"]
        assert backup_id in done, done
        listing = json.loads(
            db.succeed(
                "runuser -u postgres -g postgres -G keys --"
                f" barkeep offsite list --config {CONFIG}"
            )
        )
        names = {w["name"] for w in listing["wals"]}
        missing = [w for w in local_wals() if w not in names]
        assert missing == [], f"local WAL files not in the bucket: {missing}"
        assert backup_id in [b["id"] for b in listing["backups"]], listing["backups"]

    with subtest("Garage down: local archiving goes on, the runs fail saying why, the lag grows"):
        store.succeed("systemctl stop garage.service")
        before = len(local_wals())
        new_wal()
        new_wal()
        assert len(local_wals()) >= before + 2, "Barman's archiving waited on the off-site store"
        out = as_postgres("barman check pg")
        assert "FAILED" not in out, out
        first = wait_offsite(
            "a failed run behind the catalog",
            lambda s: s["error"] is not None and s["lag"] is not None and s["lag"]["missing_wals"] >= 2,
        )
        assert "cannot reach" in first["error"], first["error"]
        new_wal()
        grown = wait_offsite(
            "the lag growing",
            lambda s: s["error"] is not None and s["lag"]["missing_wals"] > first["lag"]["missing_wals"],
        )
        assert grown["lag"]["newest_local_wal"] == local_wals()[-1], grown
        assert_no_failed_units()

    with subtest("Garage back: the lag drains to zero, with no hole"):
        store.succeed("systemctl start garage.service")
        store.wait_for_open_port(3900)
        status = wait_offsite("in sync again", in_sync)
        assert status["lag"]["newest_local_wal"] == local_wals()[-1], status
        listing = json.loads(
            db.succeed(
                "runuser -u postgres -g postgres -G keys --"
                f" barkeep offsite list --config {CONFIG}"
            )
        )
        names = {w["name"] for w in listing["wals"]}
        missing = [w for w in local_wals() if w not in names]
        assert missing == [], f"a hole in the bucket: {missing}"
        assert_no_failed_units()
        assert_no_failed_units_on(store)
  '';
}
