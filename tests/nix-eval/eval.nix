# Offline evaluation test of services.barkeep: the pure rendering functions (nixos-module/lib.nix)
# and the module itself through lib.evalModules, against the documented configuration.
#
#   nix-instantiate --eval --strict --json tests/nix-eval/eval.nix --arg lib 'import <nixpkgs.lib>/lib'
#
# Returns { failures = [ "..." ]; passed = N; rendered = { ... }; } (scripts/nix-check fails on
# any failure). Needs nixpkgs' `lib` only. The module is evaluated together with the stand-in of
# nixpkgs' postgresql module and the NixOS option types in ./stubs.nix, with nixos-26.05's
# package names: a definition that collides with nixpkgs' own (issue 9: the package mkDefault)
# or a package nixos-26.05 does not have (python310) fails here as it would there.
{ lib }:
let
  root = ../..;
  blib = import (root + "/nixos-module/lib.nix") { inherit lib; };
  stubs = import ./stubs.nix { inherit lib; };

  pg14 = stubs.pkgs.postgresql_14;
  pgModuleFile = "nixos/modules/services/databases/postgresql.nix";
  systemd = "${stubs.nixosOptions.options.systemd.package.default}";

  # Barman with its cloud tools, as barman.nix builds it on nixos-25.11 (the stand-in's
  # python310) for the off-site copy.
  barmanCloud = stubs.pkgs2511.callPackage (root + "/nixos-module/barman.nix") { withCloud = true; };

  # Expected files hold @placeholders@ for store paths of the (fake) packages.
  expected =
    file:
    builtins.replaceStrings
      [ "@postgresql@" "@barman@" "@barman-python@" "@systemd@" ]
      [ "${pg14}" "${stubs.barman}" "${barmanCloud.pythonEnv}" systemd ]
      (builtins.readFile (./expected + "/${file}"));

  eval =
    modules:
    lib.evalModules {
      modules = [
        # nixpkgs' own modules come first in a NixOS evaluation (module-list.nix), then the user's.
        stubs.postgresqlModule
        stubs.nixosOptions
        (root + "/nixos-module/default.nix")
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
      # The settings barkeep owns (nixpkgs' own hba_file, ident_file, ... are checked apart).
      postgresql = lib.getAttrs [
        "wal_level"
        "archive_mode"
        "archive_command"
        "archive_timeout"
        "port"
      ] config.services.postgresql.settings;
      postgresqlAll = config.services.postgresql.settings;
      inherit (config.services.postgresql)
        ensureDatabases
        ensureUsers
        authentication
        identMap
        dataDir
        ;
      postgresqlPackage = config.services.postgresql.package.name;
      # `or null`: a key the module under test does not set fails its check by name, instead of
      # an uncatchable "attribute missing" stopping the whole test.
      postgresqlUnit =
        let
          unit = config.systemd.services.postgresql;
        in
        {
          inherit (unit) wants partOf;
          unitConfig = lib.genAttrs [
            "ConditionPathExists"
            "StartLimitBurst"
            "StartLimitIntervalSec"
          ] (n: unit.unitConfig.${n} or null);
        }
        // lib.genAttrs [
          "ReadWritePaths"
          "TimeoutSec"
          "TimeoutStartSec"
          "Type"
          "Restart"
        ] (n: unit.serviceConfig.${n} or null);
      setupUnit =
        let
          unit = config.systemd.services.postgresql-setup;
        in
        {
          inherit (unit) requires after script;
          unitConfig.ConditionPathExists = unit.unitConfig.ConditionPathExists or null;
          serviceConfig.SuccessExitStatus = unit.serviceConfig.SuccessExitStatus or null;
        };
      postgresqlTarget = config.systemd.targets.postgresql.requires;
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
          metricsTokenFile = "/run/secrets/barkeep-metrics-token";
          stateDir = "/srv/barkeep";
          verifyRole = "verify_app";
          postgresqlStartTimeout = "infinity";
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
        # A rule of the host's own: barkeep's must still come first.
        services.postgresql.authentication = "local app app md5";
      }
    ]).config;

  # Off-site copies to a Garage on another host, the key under /run/keys.
  offsiteOptions = {
    enable = true;
    endpointUrl = "http://store:3900";
    bucketUrl = "s3://barkeep/vm-db";
    region = "garage";
    credentialsFile = "/run/keys/barkeep-offsite";
    interval = 30;
  };
  offsiteWith = extra: [
    {
      services.barkeep = {
        database = "app";
        barman.package = barmanCloud;
        offsite = offsiteOptions // extra;
      };
    }
  ];
  offsite = rendered (eval (offsiteWith { })).config;
  offsiteVarLib = rendered (eval (offsiteWith {
    credentialsFile = "/var/lib/barkeep/offsite-credentials";
    interval = 60;
  })).config;
  # An absolute path literal (not a string) is rendered as that path: never copied into the
  # store (the file does not exist here: a copy would fail the evaluation).
  offsitePathLiteral = rendered (eval (offsiteWith { credentialsFile = /run/keys/barkeep-offsite-x; })).config;
  # Not enabled: nothing of the settings is read (they have no defaults).
  offsiteOff = rendered (eval [
    {
      services.barkeep.database = "app";
      services.barkeep.offsite.enable = false;
    }
  ]).config;

  # Options that contradict each other: the assertion (or type check) that must catch them.
  negative = {
    offsiteCredentialsInStore = {
      modules = offsiteWith { credentialsFile = "${builtins.storeDir}/aaaa-offsite-credentials"; };
      message = "outside the Nix store";
    };
    offsiteCredentialsInHome = {
      modules = offsiteWith { credentialsFile = "/root/.aws/credentials"; };
      message = "barkeep.service\ncannot see it";
    };
    offsiteBucketName = {
      modules = offsiteWith { bucketUrl = "barkeep"; };
      message = "is not an S3 URL";
    };
    offsiteBucketNotS3 = {
      modules = offsiteWith { bucketUrl = "https://store:3900/barkeep"; };
      message = "is not an S3 URL";
    };
    offsiteBucketBadPrefix = {
      modules = offsiteWith { bucketUrl = "s3://barkeep/../other"; };
      message = "is not an S3 URL";
    };
    offsiteBarmanWithoutCloud = {
      modules = offsiteWith { } ++ [ { services.barkeep.barman.package = lib.mkForce stubs.barman; } ];
      message = "needs Barman's cloud tools with boto3";
    };
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
    databaseNotPlain = {
      modules = [ { services.barkeep.database = "app'; DROP"; } ];
      message = "services.barkeep.database = ";
    };
    hbaReplaced = {
      modules = [
        {
          services.barkeep.database = "app";
          services.postgresql.authentication = lib.mkForce "local all all peer";
        }
      ];
      message = "the first rule that applies to barkeep's verify role";
    };
    hbaShadowed = {
      modules = [
        {
          services.barkeep.database = "app";
          services.postgresql.authentication = lib.mkOrder 100 "local all all trust";
        }
      ];
      message = "the first rule that applies to barkeep's verify role";
    };
    identReplaced = {
      modules = [
        {
          services.barkeep.database = "app";
          services.postgresql.identMap = lib.mkForce "postgres postgres postgres";
        }
      ];
      message = "must contain \"barkeep postgres barkeep_verify\"";
    };
  };

  negativeChecks = lib.mapAttrsToList (
    name: case:
    let
      failed = (rendered (eval case.modules).config).failedAssertions;
      hit = lib.any (m: lib.hasInfix case.message m) failed;
      r = builtins.tryEval (builtins.deepSeq failed (hit && builtins.length failed == 1));
    in
    {
      name = "negative/${name}";
      ok = r.success && r.value;
      detail = "expected exactly one failed assertion containing ${builtins.toJSON case.message}, got ${builtins.toJSON failed}";
    }
  ) negative;

  # Type checks that must reject a value outright (no assertion needed).
  typeErrors = {
    usersFileInStore = [ { services.barkeep.usersFile = "${builtins.storeDir}/aaaa-users"; } ];
    usersFileRelative = [ { services.barkeep.usersFile = "users"; } ];
    metricsTokenInStore = [
      { services.barkeep.metricsTokenFile = "${builtins.storeDir}/aaaa-token"; }
    ];
    stateDirRelative = [ { services.barkeep.stateDir = "var/lib/barkeep"; } ];
    verifyRoleNotPlain = [ { services.barkeep.verifyRole = "v; DROP"; } ];
    startTimeoutZero = [ { services.barkeep.postgresqlStartTimeout = 0; } ];
    # nixos/lib/systemd-unit-options.nix: two values of one [Service] key at one priority.
    timeoutConflict = [ { systemd.services.postgresql.serviceConfig.TimeoutSec = 3600; } ];
    barmanHomeWithSpace = [ { services.barkeep.barman.settings.barman.barman_home = "/var/lib/my barman"; } ];
    badLogLevel = [ { services.barkeep.barman.settings.barman.log_level = "LOUD"; } ];
    offsiteEndpointWithoutScheme = offsiteWith { endpointUrl = "store:3900"; };
    offsiteRegionWithSpace = offsiteWith { region = "eu west 1"; };
    offsiteIntervalZero = offsiteWith { interval = 0; };
    offsiteCredentialsRelative = offsiteWith { credentialsFile = "offsite-credentials"; };
  };
  typeChecks = lib.mapAttrsToList (name: modules: {
    name = "type-error/${name}";
    ok =
      !(builtins.tryEval (
        builtins.deepSeq (
          let
            r = rendered (eval modules).config;
          in
          [
            r.etc
            r.postgresqlUnit
          ]
        ) true
      )).success;
    detail = "expected an evaluation error";
  }) typeErrors;

  seedArchiveCommand = "test ! -f /var/lib/barman/pg/incoming/%f && cp %p /var/lib/barman/pg/incoming/%f";

  # A check that cannot be evaluated (a `throw` in the module or the stand-ins) fails by name
  # instead of stopping the whole test.
  eq =
    name: got: want:
    let
      r = builtins.tryEval (builtins.deepSeq got (got == want));
    in
    {
      inherit name;
      ok = r.success && r.value;
      detail =
        if r.success then
          "got ${builtins.toJSON got}, want ${builtins.toJSON want}"
        else
          "does not evaluate (run nix-instantiate on tests/nix-eval/eval.nix for the error)";
    };
  lines = text: builtins.filter (l: l != "") (lib.splitString "\n" text);
  # The index of the first line with `infix` in `text` (-1 if none).
  indexOf =
    infix: text:
    let
      ls = lib.splitString "\n" text;
      hits = builtins.filter (i: lib.hasInfix infix (builtins.elemAt ls i)) (
        lib.range 0 (builtins.length ls - 1)
      );
    in
    if hits == [ ] then -1 else builtins.head hits;

  checks = [
    # issue 9: the real nixpkgs 26.05 (stand-ins of ./stubs.nix)
    (eq "nixpkgs-26.05/postgresql.package (nixpkgs' mkDefault + barkeep's)" defaults.postgresqlPackage
      "postgresql-14.23"
    )
    (eq "nixpkgs-26.05/dataDir (nixpkgs' mkDefault)" defaults.dataDir "/var/lib/postgresql/14")
    (eq "nixpkgs-26.05/stateVersion 25.11 still gets 14" (rendered (eval [
      { system.stateVersion = "25.11"; }
    ]).config).postgresqlPackage "postgresql-14.23")
    (eq "nixpkgs-26.05/host's own package wins, and the assertion sees it"
      (rendered (eval [ { services.postgresql.package = stubs.pkgs.postgresql_17; } ]).config)
      .failedAssertions
      [
        (builtins.head (
          builtins.filter (m: lib.hasInfix "supports PostgreSQL 14 only" m) (
            rendered (eval [ { services.postgresql.package = stubs.pkgs.postgresql_17; } ]).config
          ).failedAssertions
        ))
      ]
    )
    (eq "nixpkgs-26.05/postgresql.service: nixpkgs' Type, Restart, TimeoutSec kept" [
      defaults.postgresqlUnit.Type
      defaults.postgresqlUnit.Restart
      defaults.postgresqlUnit.TimeoutSec
    ] [ "notify" "always" 120 ])
    (eq "nixpkgs-26.05/postgresql.service: start timeout for a paused restore" [
      defaults.postgresqlUnit.TimeoutStartSec
      custom.postgresqlUnit.TimeoutStartSec
    ] [ 3600 "infinity" ])
    (eq "nixpkgs-26.05/postgresql.service: StartLimitBurst over nixpkgs' 5, interval nixpkgs'" [
      defaults.postgresqlUnit.unitConfig.StartLimitBurst
      defaults.postgresqlUnit.unitConfig.StartLimitIntervalSec
    ] [ 20 605 ])
    (eq "nixpkgs-26.05/postgresql.target requires postgresql-setup" defaults.postgresqlTarget [
      "postgresql.service"
      "postgresql-setup.service"
    ])
    (eq "nixpkgs-26.05/postgresql-setup: skipped with postgresql.service (start guard)"
      defaults.setupUnit.unitConfig.ConditionPathExists
      defaults.postgresqlUnit.unitConfig.ConditionPathExists
    )
    (eq "nixpkgs-26.05/postgresql-setup: stopped while waiting is no failure"
      defaults.setupUnit.serviceConfig.SuccessExitStatus
      "SIGTERM"
    )
    (eq "nixpkgs-26.05/postgresql-setup: waits quietly while in recovery, before nixpkgs' loop" (
      let
        script = defaults.setupUnit.script;
        mine = indexOf "barkeep: a restore paused at its target" script;
      in
      mine >= 0 && mine < indexOf "check-connection() {" script
    ) true)
    (eq "nixpkgs-26.05/postgresql-setup: verify grant after nixpkgs' ensureUsers" (
      let
        script = custom.setupUnit.script;
      in
      [
        (indexOf "CREATE USER \"verify_app\"" script < indexOf "GRANT %I TO %I" script)
        (indexOf "ALTER DATABASE \"app\" OWNER TO \"app\"" script < indexOf "GRANT %I TO %I" script)
        (indexOf "GRANT %I TO %I" script > 0)
      ]
    ) [ true true true ])
    (eq "nixpkgs-26.05/postgresql-setup: verify role's clauses" (builtins.filter (
      l: lib.hasInfix "ALTER ROLE \"verify_app\"" l
    ) (map lib.trim (lines custom.setupUnit.script))) [
      "psql -tAc 'ALTER ROLE \"verify_app\" nobypassrls nocreatedb nocreaterole login noreplication nosuperuser'"
    ])
    (eq "custom/verify-role.sql" (
      let
        script = custom.setupUnit.script;
        from = indexOf "DO $barkeep$" script;
        to = indexOf "$barkeep$;" script;
        ls = lib.splitString "\n" script;
      in
      lib.concatMapStrings (i: builtins.elemAt ls i + "\n") (lib.range from to)
    ) (expected "custom/verify-role.sql"))
    (eq "custom/pg_hba.conf (barkeep's line first, nixpkgs' defaults last)" custom.authentication (
      expected "custom/pg_hba.conf"
    ))
    (eq "custom/pg_ident.conf" custom.identMap (expected "custom/pg_ident.conf"))
    (eq "custom/hba_file and ident_file are these texts" [
      (lib.hasSuffix "-pg_hba.conf" custom.postgresqlAll.hba_file)
      (lib.hasSuffix "-pg_ident.conf" custom.postgresqlAll.ident_file)
    ] [ true true ])
    (eq "custom/ensureUsers: owner role (ensureDBOwnership), verify role (no superuser rights)"
      custom.ensureUsers
      [
        {
          name = "app";
          ensureDBOwnership = true;
          ensureClauses = {
            superuser = null;
            createrole = null;
            createdb = null;
            "inherit" = null;
            login = null;
            replication = null;
            bypassrls = null;
          };
        }
        {
          name = "verify_app";
          ensureDBOwnership = false;
          ensureClauses = {
            superuser = false;
            createrole = false;
            createdb = false;
            "inherit" = null;
            login = true;
            replication = false;
            bypassrls = false;
          };
        }
      ]
    )
    (eq "default/pg_hba.conf: barkeep's line for the postgres database" (lines defaults.authentication) [
      "# Generated file; do not edit!"
      "local postgres barkeep_verify peer map=barkeep"
      "# default value of services.postgresql.authentication"
      "local all postgres         peer map=postgres"
      "local all all              peer"
      "host  all all 127.0.0.1/32 md5"
      "host  all all ::1/128      md5"
    ])
    (eq "default/ensureUsers: only the verify role (postgres owns the postgres database)" (map (
      u: u.name
    ) defaults.ensureUsers) [ "barkeep_verify" ])

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
    (eq "default/warnings: the postgres database gives the verify role nothing" (map (
      w: lib.hasInfix "verify queries can read only what PUBLIC may read" w
    ) defaults.warnings) [ true ])

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
    # nixpkgs adds a data directory other than its default to ReadWritePaths itself.
    (eq "custom/postgresql.ReadWritePaths" custom.postgresqlUnit.ReadWritePaths [
      "/srv/barman/main/incoming"
      "/srv/postgresql/14"
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

    # off-site copies
    (eq "offsite/barkeep.toml" offsite.etc."barkeep/barkeep.toml" (expected "offsite/barkeep.toml"))
    (eq "offsite/assertions and warnings" (offsite.failedAssertions ++ offsite.warnings) [ ])
    (eq "offsite/barkeep.service reaches /run/keys (group keys), nothing else added"
      offsite.barkeepUnit.SupplementaryGroups or null
      [ "keys" ]
    )
    (eq "offsite/barkeep.service may use IPv4 and IPv6, no IP filter, no private network" [
      (lib.all (f: lib.elem f offsite.barkeepUnit.RestrictAddressFamilies) [
        "AF_INET"
        "AF_INET6"
      ])
      (offsite.barkeepUnit ? IPAddressDeny)
      (offsite.barkeepUnit.PrivateNetwork or false)
    ] [ true false false ])
    (eq "offsite/credentials outside /run/keys: no supplementary group" (
      offsiteVarLib.barkeepUnit.SupplementaryGroups or null
    ) null)
    (eq "offsite/other credentials and interval" (
      let
        t = offsiteVarLib.etc."barkeep/barkeep.toml";
      in
      [
        (lib.hasInfix "credentials_file = \"/var/lib/barkeep/offsite-credentials\"\n" t)
        (lib.hasInfix "interval_secs = 60\n" t)
      ]
    ) [ true true ])
    (eq "offsite/a path literal is rendered as its path, not copied into the store" (lib.hasInfix
      "credentials_file = \"/run/keys/barkeep-offsite-x\"\n"
      offsitePathLiteral.etc."barkeep/barkeep.toml"
    ) true)
    (eq "offsite/restart on a change of the section" (
      lib.elem offsite.etc."barkeep/barkeep.toml" (
        (eval (offsiteWith { })).config.systemd.services.barkeep.restartTriggers
      )
    ) true)
    (eq "offsite/disabled: no section, no group, default barkeep.toml" [
      (lib.hasInfix "[offsite]" offsiteOff.etc."barkeep/barkeep.toml")
      (offsiteOff.barkeepUnit.SupplementaryGroups or null)
      offsiteOff.failedAssertions
    ] [ false null [ ] ])
    (eq "offsite/default without offsite: no [offsite] in the documented barkeep.toml" (lib.hasInfix "[offsite]"
      defaults.etc."barkeep/barkeep.toml"
    ) false)
    (eq "lib/isBucketUrl" (map blib.isBucketUrl [
      "s3://barkeep"
      "s3://my.bucket-1/barkeep/db_1"
      "s3://abc/a/b.c/d-e"
      "barkeep"
      "s3://"
      "s3://ab"
      "s3://Barkeep"
      "s3://bucket/"
      "s3://bucket//x"
      "s3://bucket/../x"
      "s3://bucket/./x"
      "s3://bucket/a b"
      "s3://-bucket"
      "s3://bucket-"
      "https://bucket"
      "s3://${lib.concatStrings (lib.replicate 64 "a")}"
      "s3://bucket/${lib.concatStrings (lib.replicate 513 "a")}"
    ]) ([ true true true ] ++ lib.replicate 14 false))
    (eq "barman-3.15/warning" (builtins.length
      (rendered (eval [
        {
          services.barkeep.database = "app";
          services.barkeep.barman.package = stubs.barman315;
        }
      ]).config).warnings
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
    offsite = {
      inherit (offsite) etc postgresql;
    };
  };
}
