# `nix run .#vm`: a throw-away NixOS VM with barkeep, PostgreSQL 14, Barman 3.3.0 and sample data
# (an `orders` table that grows every minute, and a first backup), the UI forwarded to the
# host's http://localhost:8080. Log in on the console as root (no password).
{ config, pkgs, ... }:
let
  pg = config.services.postgresql.package;
  barman = "${config.services.barkeep.barman.package}/bin/barman -c /etc/barman.conf";
in
{
  networking.hostName = "barkeep-demo";
  system.stateVersion = "26.05";

  services.barkeep = {
    enable = true;
    database = "app";
    # barkeep stays on loopback (no users file needed for a demo); systemd-socket-proxyd below
    # forwards the VM's port 8080, which QEMU forwards from the host's 127.0.0.1:8080 only.
    port = 8081;
  };

  systemd.sockets.barkeep-demo-proxy = {
    wantedBy = [ "sockets.target" ];
    listenStreams = [ "8080" ];
  };
  systemd.services.barkeep-demo-proxy = {
    after = [ "barkeep.service" ];
    serviceConfig = {
      ExecStart = "${config.systemd.package}/lib/systemd/systemd-socket-proxyd 127.0.0.1:8081";
      DynamicUser = true;
    };
  };
  networking.firewall.allowedTCPPorts = [ 8080 ];

  virtualisation.vmVariant.virtualisation = {
    memorySize = 2048;
    diskSize = 4096;
    graphics = false;
    forwardPorts = [
      {
        from = "host";
        host.address = "127.0.0.1";
        host.port = 8080;
        guest.port = 8080;
      }
    ];
  };

  services.getty.autologinUser = "root";
  users.users.root.initialHashedPassword = "";

  # Sample data, once: a table of orders and a first base backup.
  systemd.services.barkeep-demo-data = {
    description = "barkeep demo: sample data and a first backup";
    wantedBy = [ "multi-user.target" ];
    after = [ "barman-init.service" ];
    requires = [ "barman-init.service" ];
    unitConfig.ConditionPathExists = "!/var/lib/barkeep-demo/loaded";
    path = [ pg ];
    serviceConfig = {
      Type = "oneshot";
      User = "postgres";
      StateDirectory = "barkeep-demo";
    };
    script = ''
      psql -X -v ON_ERROR_STOP=1 -d app <<'SQL'
      -- as the application's role, which owns the database: barkeep's verify role reads what
      -- belongs to it
      SET ROLE app;
      CREATE TABLE IF NOT EXISTS orders (
        id bigserial PRIMARY KEY,
        customer text NOT NULL,
        amount numeric(10, 2) NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      );
      INSERT INTO orders (customer, amount)
      SELECT 'customer ' || (g % 17), round((random() * 500)::numeric, 2)
      FROM generate_series(1, 500) g;
      SQL
      ${barman} backup --wait pg
      touch /var/lib/barkeep-demo/loaded
    '';
  };

  # A new order every minute, so that there is history to restore to.
  systemd.services.barkeep-demo-orders = {
    description = "barkeep demo: one more order";
    after = [ "barkeep-demo-data.service" ];
    path = [ pg ];
    serviceConfig = {
      Type = "oneshot";
      User = "postgres";
    };
    script = ''
      psql -X -d app -c "INSERT INTO orders (customer, amount) VALUES ('customer ' || (random() * 16)::int, round((random() * 500)::numeric, 2))"
    '';
  };
  systemd.timers.barkeep-demo-orders = {
    wantedBy = [ "timers.target" ];
    timerConfig = {
      OnCalendar = "minutely";
      Unit = "barkeep-demo-orders.service";
    };
  };

  environment.systemPackages = [ pkgs.curl ];
}
