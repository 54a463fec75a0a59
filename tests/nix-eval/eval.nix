# Offline evaluation test of services.barkeep: the pure rendering functions (nixos-module/lib.nix)
# and the module itself through lib.evalModules, against the documented configuration.
#
#   nix-instantiate --eval --strict --json tests/nix-eval/eval.nix --arg lib 'import <nixpkgs.lib>/lib'
#
# Returns { failures = [ "..." ]; passed = N; rendered = { ... }; } (scripts/nix-check fails on
# any failure). Needs nixpkgs' `lib` only; see ./stubs.nix for the little that is stubbed.
{ lib }:
let
  root = ../..;
  blib = import (root + "/nixos-module/lib.nix") { inherit lib; };
  stubs = import ./stubs.nix { inherit lib; };

  pg14 = stubs.pkgs.postgresql_14;
  systemd = "${stubs.nixosOptions.options.systemd.package.default}";

  # Expected files hold @placeholders@ for store paths of the (fake) packages.
  expected =
    file:
    builtins.replaceStrings
      [ "@postgresql@" "@barman@" "@systemd@" ]
      [ "${pg14}" "${stubs.barman}" systemd ]
      (builtins.readFile (./expected + "/${file}"));

  eval =
    modules:
    lib.evalModules {
      modules = [
        (root + "/nixos-module/default.nix")
        stubs.nixosOptions
        { _module.args.pkgs = stubs.pkgs; }
        {
          services.barkeep = {
            enable = true;
            package = stubs.barkeep;
            barman.package = lib.mkDefault stubs.barman;
          };
        }
      ]
      ++ modules;
    };

  rendered =
    config:
    let
      etc = lib.mapAttrs (_: v: v.text) config.environment.etc;
    in
    {
      inherit etc;
      postgresql = config.services.postgresql.settings;
      inherit (config.services.postgresql) ensureDatabases;
      postgresqlUnit = {
        inherit (config.systemd.services.postgresql) unitConfig;
        inherit (config.systemd.services.postgresql.serviceConfig) ReadWritePaths;
      };
      barkeepUnit = config.systemd.services.barkeep.serviceConfig;
      barkeepEnv = config.systemd.services.barkeep.environment;
      scripts = lib.mapAttrs (_: u: u.script) config.systemd.services;
      cron = config.systemd.services.barman-cron.serviceConfig.ExecStart;
      timers = lib.mapAttrs (_: t: t.timerConfig) config.systemd.timers;
      tmpfiles = config.systemd.tmpfiles.rules;
      polkit = config.security.polkit.extraConfig;
      firewall = config.networking.firewall.allowedTCPPorts;
      failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
      inherit (config) warnings;
    };

  # --- cases ------------------------------------------------------------------------------
  defaults = rendered (eval [ ]).config;

  custom = rendered
    (eval [
      {
        services.barkeep = {
          database = "app";
          archiveTimeout = 60;
          listenAddress = "0.0.0.0";
          port = 9090;
          openFirewall = true;
          usersFile = "/run/secrets/barkeep-users";
          stateDir = "/srv/barkeep";
          barman = {
            server = "main";
            keep = 5;
            timeoutSecs = 600;
            backupSchedule = "*-*-* 03:15:00";
            settings.barman = {
              barman_home = "/srv/barman";
              log_level = "DEBUG";
              minimum_redundancy = 1;
            };
            serverSettings.parallel_jobs = 2;
          };
        };
        services.postgresql.settings.port = 5433;
        services.postgresql.dataDir = "/srv/postgresql/14";
      }
    ]).config;

  # Options that contradict each other: the assertion (or type check) that must catch them.
  negative = {
    postgresql16 = {
      modules = [ { services.postgresql.package = stubs.pkgs.postgresql_16; } ];
      message = "supports PostgreSQL 14 only";
    };
    serverNotPlain = {
      modules = [ { services.barkeep.barman.server = "pg; rm -rf /"; } ];
      message = "is not a plain name";
    };
    serverNamedBarman = {
      modules = [ { services.barkeep.barman.server = "barman"; } ];
      message = "is not a plain name";
    };
    exposedWithoutUsers = {
      modules = [ { services.barkeep.listenAddress = "0.0.0.0"; } ];
      message = "set services.barkeep.usersFile";
    };
    hostName = {
      modules = [
        {
          services.barkeep.listenAddress = "localhost";
          services.barkeep.usersFile = "/run/u";
        }
      ];
      message = "must be an IP address";
    };
    otherBarmanUser = {
      modules = [ { services.barkeep.barman.settings.barman.barman_user = "barman"; } ];
      message = "it must\nbe \"postgres\"";
    };
    archiveCommandOverridden = {
      modules = [ { services.postgresql.settings.archive_command = lib.mkForce "/bin/true"; } ];
      message = "were overridden";
    };
    stateDirInsideDataDir = {
      modules = [ { services.barkeep.stateDir = "/var/lib/postgresql/14/barkeep"; } ];
      message = "must be outside the data directory";
    };
    stateDirElsewhere = {
      modules = [ { services.barkeep.stateDir = "/barkeep"; } ];
      message = "share no directory but /";
    };
    barmanD = {
      modules = [ { services.barkeep.barman.settings.barman.configuration_files_directory = "/srv/b"; } ];
      message = "must be under /etc";
    };
    polkitOff = {
      modules = [ { security.polkit.enable = false; } ];
      message = "needs security.polkit.enable";
    };
  };

  negativeChecks = lib.mapAttrsToList (
    name: case:
    let
      failed = (rendered (eval case.modules).config).failedAssertions;
      hit = lib.any (m: lib.hasInfix case.message m) failed;
    in
    {
      name = "negative/${name}";
      ok = hit && builtins.length failed == 1;
      detail = "expected exactly one failed assertion containing ${builtins.toJSON case.message}, got ${builtins.toJSON failed}";
    }
  ) negative;

  # Type checks that must reject a value outright (no assertion needed).
  typeErrors = {
    usersFileInStore = [ { services.barkeep.usersFile = "${builtins.storeDir}/aaaa-users"; } ];
    usersFileRelative = [ { services.barkeep.usersFile = "users"; } ];
    stateDirRelative = [ { services.barkeep.stateDir = "var/lib/barkeep"; } ];
    barmanHomeWithSpace = [ { services.barkeep.barman.settings.barman.barman_home = "/var/lib/my barman"; } ];
    badLogLevel = [ { services.barkeep.barman.settings.barman.log_level = "LOUD"; } ];
  };
  typeChecks = lib.mapAttrsToList (name: modules: {
    name = "type-error/${name}";
    ok = !(builtins.tryEval (builtins.deepSeq (rendered (eval modules).config).etc true)).success;
    detail = "expected an evaluation error";
  }) typeErrors;

  seedArchiveCommand = "test ! -f /var/lib/barman/pg/incoming/%f && cp %p /var/lib/barman/pg/incoming/%f";

  eq = name: got: want: {
    inherit name;
    ok = got == want;
    detail = "got ${builtins.toJSON got}, want ${builtins.toJSON want}";
  };

  checks = [
    # pure functions
    (eq "lib/archiveCommand" (blib.archiveCommand {
      barmanHome = "/var/lib/barman";
      server = "pg";
    }) seedArchiveCommand)
    (eq "lib/postgresqlSettings"
      (blib.postgresqlSettings {
        barmanHome = "/var/lib/barman";
        server = "pg";
        archiveTimeout = 900;
      })
      {
        wal_level = "replica";
        archive_mode = "on";
        archive_command = seedArchiveCommand;
        archive_timeout = 900;
      }
    )
    (eq "lib/conninfo/default" (blib.conninfo {
      database = "postgres";
      port = 5432;
    }) "host=/run/postgresql user=postgres dbname=postgres")
    (eq "lib/conninfo/port" (blib.conninfo {
      database = "app";
      port = 5433;
    }) "host=/run/postgresql user=postgres dbname=app port=5433")
    (eq "lib/socketAddr" [
      (blib.socketAddr "127.0.0.1" 8080)
      (blib.socketAddr "::1" 8080)
    ] [ "127.0.0.1:8080" "[::1]:8080" ])
    (eq "lib/isLoopback" (map blib.isLoopback [
      "127.0.0.1"
      "127.1.2.3"
      "::1"
      "0.0.0.0"
      "10.0.0.1"
      "::"
    ]) [ true true true false false false ])
    (eq "lib/isPlainName" (map blib.isPlainName [
      "pg"
      "main_2-x"
      ""
      "pg;x"
      "a b"
      "../x"
    ]) [ true true false false false false ])
    (eq "lib/renderIni/null-removes-key" (blib.renderIni {
      s = {
        a = "1";
        b = null;
      };
    }) "[s]\na=1\n")
    (eq "lib/renderToml" (blib.renderToml {
      z = 1;
      a = "x\"y";
      t = {
        b = true;
        l = [ "p" ];
      };
    }) "a = \"x\\\"y\"\nz = 1\n\n[t]\nb = true\nl = [\"p\"]\n")
    (eq "lib/commonAncestor" [
      (blib.commonAncestor "/var/lib/postgresql" "/var/lib/barkeep")
      (blib.commonAncestor "/pg" "/var/lib")
    ] [ "/var/lib" "/" ])

    # the module, default options: the documented configuration
    (eq "default/barman.conf" defaults.etc."barman.conf" (expected "default/barman.conf"))
    (eq "default/barman.d/pg.conf" defaults.etc."barman.d/pg.conf" (expected "default/pg.conf"))
    (eq "default/barkeep.toml" defaults.etc."barkeep/barkeep.toml" (expected "default/barkeep.toml"))
    (eq "default/postgresql.settings" defaults.postgresql {
      wal_level = "replica";
      archive_mode = "on";
      archive_command = seedArchiveCommand;
      archive_timeout = 900;
      port = 5432;
    })
    (eq "default/ensureDatabases" defaults.ensureDatabases [ ])
    (eq "default/postgresql.ReadWritePaths" defaults.postgresqlUnit.ReadWritePaths [
      "/var/lib/barman/pg/incoming"
    ])
    (eq "default/postgresql.conditions" defaults.postgresqlUnit.unitConfig.ConditionPathExists [
      "|/var/lib/postgresql/14/PG_VERSION"
      "|!/var/lib/barkeep/initdb-guard"
      "!/var/lib/barkeep/postgresql-start-blocked"
    ])
    (eq "default/barkeep.ExecStart" defaults.barkeepUnit.ExecStart
      "${stubs.barkeep}/bin/barkeep serve --config /etc/barkeep/barkeep.toml"
    )
    (eq "default/barkeep.user" [ defaults.barkeepUnit.User defaults.barkeepUnit.Group ] [
      "postgres"
      "postgres"
    ])
    (eq "default/barkeep.ReadWritePaths" defaults.barkeepUnit.ReadWritePaths [
      "/var/lib"
      "/var/lib/barman"
      "-/var/log/barman.log"
    ])
    (eq "default/barkeep.env" (lib.filterAttrs (n: _: lib.hasPrefix "LEPTOS_" n) defaults.barkeepEnv) {
      LEPTOS_SITE_ROOT = "${stubs.barkeep}/share/barkeep/site";
      LEPTOS_SITE_ADDR = "127.0.0.1:8080";
      LEPTOS_OUTPUT_NAME = "barkeep";
      LEPTOS_SITE_PKG_DIR = "pkg";
      LEPTOS_ENV = "PROD";
    })
    (eq "default/hardening" (lib.getAttrs [
      "ProtectSystem"
      "NoNewPrivileges"
      "RemoveIPC"
      "CapabilityBoundingSet"
    ] defaults.barkeepUnit) {
      ProtectSystem = "strict";
      NoNewPrivileges = true;
      RemoveIPC = false;
      CapabilityBoundingSet = "";
    })
    (eq "default/cron" defaults.cron "${stubs.barman}/bin/barman -c /etc/barman.conf -q cron")
    (eq "default/timers" defaults.timers {
      barman-cron = {
        OnCalendar = "minutely";
        Persistent = true;
        AccuracySec = "1s";
        Unit = "barman-cron.service";
      };
      barman-backup = {
        OnCalendar = "daily";
        Persistent = true;
        Unit = "barman-backup.service";
      };
    })
    (eq "default/backup.script" defaults.scripts.barman-backup (expected "default/barman-backup.sh"))
    (eq "default/init.script" defaults.scripts.barman-init (expected "default/barman-init.sh"))
    (eq "default/tmpfiles" defaults.tmpfiles [
      "d /var/lib/barman 0750 postgres postgres - -"
      "d /var/lib/barman/pg 0750 postgres postgres - -"
      "d /var/lib/barman/pg/incoming 0750 postgres postgres - -"
      "d /var/lib/barkeep 0700 postgres postgres - -"
      "f /var/log/barman.log 0640 postgres postgres - -"
    ])
    (eq "default/polkit" defaults.polkit (expected "default/polkit.js"))
    (eq "default/firewall" defaults.firewall [ ])
    (eq "default/assertions" defaults.failedAssertions [ ])
    (eq "default/warnings" defaults.warnings [ ])

    # the module, other options
    (eq "custom/barman.conf" custom.etc."barman.conf" (expected "custom/barman.conf"))
    (eq "custom/barman.d/main.conf" custom.etc."barman.d/main.conf" (expected "custom/main.conf"))
    (eq "custom/barkeep.toml" custom.etc."barkeep/barkeep.toml" (expected "custom/barkeep.toml"))
    (eq "custom/postgresql.settings" custom.postgresql {
      wal_level = "replica";
      archive_mode = "on";
      archive_command = "test ! -f /srv/barman/main/incoming/%f && cp %p /srv/barman/main/incoming/%f";
      archive_timeout = 60;
      port = 5433;
    })
    (eq "custom/ensureDatabases" custom.ensureDatabases [ "app" ])
    (eq "custom/postgresql.ReadWritePaths" custom.postgresqlUnit.ReadWritePaths [
      "/srv/barman/main/incoming"
    ])
    (eq "custom/postgresql.conditions" custom.postgresqlUnit.unitConfig.ConditionPathExists [
      "|/srv/postgresql/14/PG_VERSION"
      "|!/srv/barkeep/initdb-guard"
      "!/srv/barkeep/postgresql-start-blocked"
    ])
    (eq "custom/barkeep.ReadWritePaths" custom.barkeepUnit.ReadWritePaths [
      "/srv"
      "/srv/barman"
      "-/var/log/barman.log"
    ])
    (eq "custom/barkeep.listen" custom.barkeepEnv.LEPTOS_SITE_ADDR "0.0.0.0:9090")
    (eq "custom/backup.timer" custom.timers.barman-backup.OnCalendar "*-*-* 03:15:00")
    (eq "custom/backup.script" custom.scripts.barman-backup (expected "custom/barman-backup.sh"))
    (eq "custom/firewall" custom.firewall [ 9090 ])
    (eq "custom/assertions" custom.failedAssertions [ ])
    (eq "barman-3.15/warning" (builtins.length
      (rendered (eval [ { services.barkeep.barman.package = stubs.barman315; } ]).config).warnings
    ) 1)
  ]
  ++ negativeChecks
  ++ typeChecks;

  failures = map (c: "${c.name}: ${c.detail}") (lib.filter (c: !c.ok) checks);
in
{
  inherit failures;
  passed = builtins.length checks - builtins.length failures;
  total = builtins.length checks;
  rendered = {
    default = {
      inherit (defaults) etc postgresql;
    };
    custom = {
      inherit (custom) etc postgresql;
    };
  };
}
