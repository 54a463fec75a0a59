# services.barkeep: PostgreSQL 14 archived by Barman 3.3.0 (local-rsync, WAL copied into
# Barman's incoming directory by archive_command) and the barkeep web app that restores it to a
# point in time. Written after nixos/modules/services/backup/pgbackrest.nix; the rendering of
# every file lives in ./lib.nix (pure, evaluated by tests/nix-eval without a Nix cache).
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib)
    literalExpression
    literalMD
    mkDefault
    mkEnableOption
    mkAfter
    mkBefore
    mkIf
    mkMerge
    mkOption
    mkOverride
    mkPackageOption
    optional
    types
    ;

  cfg = config.services.barkeep;
  pgCfg = config.services.postgresql;
  blib = import ./lib.nix { inherit lib; };

  settingsFormat = pkgs.formats.ini { };
  # One INI section: attrsOf (nullOr (bool | int | float | str)).
  sectionType = settingsFormat.type.nestedTypes.elemType;

  absolutePath = types.addCheck types.str blib.isAbsolutePath // {
    description = "absolute path";
  };
  # Paths that end up in archive_command (a shell command), unit conditions and argv.
  plainPath = types.strMatching "/[A-Za-z0-9._/+@-]*" // {
    description = "absolute path of letters, digits and . _ - + @";
  };
  externalPath =
    types.addCheck types.str (s: blib.isAbsolutePath s && !blib.isStorePath s)
    // {
      description = "absolute path outside the Nix store";
    };

  global = cfg.barman.settings.barman;
  barmanUser = global.barman_user;
  barmanHome = global.barman_home;
  logFile = global.log_file;
  server = cfg.barman.server;
  incoming = blib.incomingDir { inherit barmanHome server; };
  archiveCommand = blib.archiveCommand { inherit barmanHome server; };

  pgPackage = pgCfg.package;

  # The application database belongs to the role of the same name (nixpkgs' ensureDBOwnership),
  # a LOGIN role without superuser; barkeep's verify role is made a member of it. The "postgres"
  # database belongs to the superuser: the verify role then gets nothing (see the warning).
  ownDatabase = cfg.database != "postgres";
  verifyHbaLine = blib.verifyHbaLine {
    inherit (cfg) database;
    role = cfg.verifyRole;
  };
  verifyIdentLine = blib.verifyIdentLine {
    osUser = barmanUser;
    role = cfg.verifyRole;
  };
  # pg_hba.conf is first-match: the first rule that could apply to the verify role connecting
  # over the socket to the database must be barkeep's own.
  hbaRules = builtins.filter (
    l: l != "" && !lib.hasPrefix "#" l
  ) (map lib.trim (lib.splitString "\n" pgCfg.authentication));
  hbaTokens = l: builtins.filter (t: builtins.isString t && t != "") (builtins.split "[ \t]+" l);
  mayMatch =
    value: token:
    lib.elem token [
      "all"
      value
      "sameuser"
      "samerole"
    ]
    || builtins.match "[+@].*|.*,.*|\".*" token != null;
  firstVerifyRule = lib.findFirst (
    l:
    let
      t = hbaTokens l;
    in
    builtins.length t >= 3
    && builtins.elemAt t 0 == "local"
    && mayMatch cfg.database (builtins.elemAt t 1)
    && mayMatch cfg.verifyRole (builtins.elemAt t 2)
  ) null hbaRules;

  postgresqlStartConditions = blib.postgresqlStartConditions {
    inherit (pgCfg) dataDir;
    inherit (cfg) stateDir;
  };
  pgBinDir = "${pgPackage}/bin";
  pgPort = pgCfg.settings.port;

  barmanConfFile = "/etc/barman.conf";
  barmanBin = "${cfg.barman.package}/bin/barman";
  barman = args: lib.escapeShellArgs ([ barmanBin "-c" barmanConfFile ] ++ args);
  serverConfEtc = "${lib.removePrefix "/etc/" global.configuration_files_directory}/${server}.conf";

  configFile = "/etc/barkeep/barkeep.toml";
  listen = blib.socketAddr cfg.listenAddress cfg.port;

  # --- off-site copies (docs/offsite.md) ---------------------------------------------------
  offsite = cfg.offsite;
  # As a string, never copied into the store: a path literal would be, if interpolated.
  credentialsFile = toString offsite.credentialsFile;
  # Hidden from barkeep's unit by its hardening (ProtectHome, PrivateTmp).
  hiddenFromUnit = [
    "/home/"
    "/root/"
    "/run/user/"
    "/tmp/"
    "/var/tmp/"
  ];
  # /run/keys (NixOS' ramfs for deployment keys) is root:keys 0750.
  underRunKeys = lib.hasPrefix "/run/keys/" credentialsFile;
  barmanHasCloud =
    (cfg.barman.package.withCloud or false) && cfg.barman.package ? pythonEnv;
  offsiteToml = blib.offsiteConfig {
    inherit (offsite)
      endpointUrl
      bucketUrl
      region
      interval
      ;
    inherit credentialsFile;
    cloudBinDir = "${cfg.barman.package}/bin";
    python = "${cfg.barman.package.pythonEnv}/bin/python";
  };
  barkeepToml = blib.renderToml (
    blib.barkeepConfig {
      inherit
        listen
        pgBinDir
        barmanHome
        server
        barmanBin
        ;
      inherit (cfg) stateDir usersFile metricsTokenFile database;
      dataDir = pgCfg.dataDir;
      port = pgPort;
      barmanConfig = barmanConfFile;
      barmanTimeout = cfg.barman.timeoutSecs;
      systemctl = "${config.systemd.package}/bin/systemctl";
      unit = "postgresql.service";
      verifyUser = cfg.verifyRole;
      offsite = if offsite.enable then offsiteToml else null;
    }
  );

  # Shared by every unit that runs barman or barkeep as barman_user (= postgres).
  hardening = {
    User = barmanUser;
    Group = barmanUser;
    UMask = "0077";
    ProtectSystem = "strict";
    ProtectHome = true;
    PrivateTmp = true;
    PrivateDevices = true;
    NoNewPrivileges = true;
    CapabilityBoundingSet = "";
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectClock = true;
    ProtectHostname = true;
    ProtectProc = "invisible"; # the postmaster runs as the same user: still visible
    RestrictAddressFamilies = [
      "AF_UNIX"
      "AF_INET"
      "AF_INET6"
    ];
    RestrictNamespaces = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    LockPersonality = true;
    SystemCallArchitectures = "native";
    # Not "~@privileged": rsync -a calls chown/lchown to keep the group.
    SystemCallFilter = [ "@system-service" ];
    # Not MemoryDenyWriteExecute: Python (barman) may need W+X pages for ctypes/libffi.
    # RemoveIPC must stay off: these units run as postgres, and RemoveIPC would delete the
    # running server's System V / POSIX shared memory whenever one of them stops.
    RemoveIPC = false;
  };

  barmanEnvironment = {
    # barkeep runs barman with TZ=UTC too: the same zone for backup ids and target times.
    TZ = "UTC";
    # postgres' home is the data directory (NixOS): keep everything else out of it.
    HOME = barmanHome;
  };

  barmanReadWrite = [ barmanHome ] ++ optional (logFile != null) "-${logFile}";

  # The set-aside rename moves the data directory into stateDir: both must lie in one
  # writable mount of the hardened service (see ReadWritePaths below).
  renameRoot = blib.commonAncestor (dirOf pgCfg.dataDir) cfg.stateDir;
in
{
  options.services.barkeep = {
    enable = mkEnableOption "barkeep, point-in-time recovery of PostgreSQL 14 with Barman 3.3.0 and a web UI";

    package = mkPackageOption pkgs "barkeep" { } // {
      description = ''
        The barkeep package (server and CLI, with its web assets in `share/barkeep/site`).
        The flake's `nixosModules.default` sets it to the flake's `packages.default`.
      '';
    };

    listenAddress = mkOption {
      type = types.str;
      default = "127.0.0.1";
      example = "0.0.0.0";
      description = ''
        IP address the web UI listens on. Anything other than a loopback address
        requires [](#opt-services.barkeep.usersFile).
      '';
    };

    port = mkOption {
      type = types.port;
      default = 8080;
      description = "TCP port of the web UI.";
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open [](#opt-services.barkeep.port) in the firewall.";
    };

    stateDir = mkOption {
      type = plainPath;
      default = "/var/lib/barkeep";
      description = ''
        barkeep's state: the restore journal, the host-wide restore lock and the pre-restore
        data directories.

        It MUST be on the same filesystem as `services.postgresql.dataDir`: a restore sets the
        current data directory aside by renaming it into this directory (instant, nothing
        copied or deleted). This cannot be checked at evaluation time. The directory that
        contains both it and the data directory's parent (`/var/lib` by default) is made
        writable for barkeep's otherwise read-only (`ProtectSystem=strict`) unit, so it must
        not be `/`.
      '';
    };

    usersFile = mkOption {
      type = types.nullOr externalPath;
      default = null;
      example = "/run/secrets/barkeep-users";
      description = ''
        The users of the web app: `name:role:argon2id-hash` lines (roles `viewer` and
        `operator`), outside the Nix store (a path given as a string, so that it is not copied
        into the world-readable store), readable by the `postgres` user. When null, barkeep
        uses `<stateDir>/users`. Create and change users with
        `sudo -u postgres barkeep --config /etc/barkeep/barkeep.toml user add NAME --role operator`
        (the password is asked for, or read from stdin; never from the command line). Every page
        needs a signed-in user, on loopback too. Required when
        [](#opt-services.barkeep.listenAddress) is not a loopback address.
      '';
    };

    metricsTokenFile = mkOption {
      type = types.nullOr externalPath;
      default = null;
      example = "/run/secrets/barkeep-metrics-token";
      description = ''
        A file whose first line (at least 32 characters) is a bearer token that lets Prometheus
        read `/metrics` without a session (`Authorization: Bearer <token>`). Outside the Nix
        store, readable by the `postgres` user. When null, `/metrics` needs a signed-in session
        like every page.
      '';
    };

    database = mkOption {
      type = types.str;
      default = "postgres";
      example = "app";
      description = ''
        Database that barkeep and Barman connect to (the application database, where the
        read-only verification queries of a paused restore run). Unless it is `postgres`, it is
        created with `services.postgresql.ensureDatabases` and owned by the role of the same
        name (`ensureUsers` with `ensureDBOwnership`, a LOGIN role without superuser), whose
        rights [](#opt-services.barkeep.verifyRole) gets: the application's tables must belong
        to that role. `postgres` belongs to the superuser, so the verify role gets nothing there.
      '';
    };

    verifyRole = mkOption {
      type = types.strMatching "[A-Za-z_][A-Za-z0-9_]*" // {
        description = "PostgreSQL role name (letters, digits and _)";
      };
      default = "barkeep_verify";
      description = ''
        PostgreSQL role that barkeep's read-only verify queries run as, while a restore is
        paused at its target (`postgres.verify_user` in barkeep.toml). The module creates it
        with `services.postgresql.ensureUsers` as LOGIN, NOSUPERUSER, NOCREATEDB, NOCREATEROLE,
        NOREPLICATION, NOBYPASSRLS; `postgresql-setup.service` makes it a member of the role
        that owns [](#opt-services.barkeep.database) (the role of the same name) and of
        nothing else, so it reads what the application reads and cannot become a superuser, read
        or write server files or run programs. It connects only to that database, over the
        socket, by peer authentication of barkeep's OS user (`postgres`) through the ident map
        `barkeep`. Created at set-up, so every backup taken afterwards contains it.
      '';
    };

    postgresqlStartTimeout = mkOption {
      type = types.either types.ints.positive (types.enum [ "infinity" ]);
      default = 3600;
      example = "infinity";
      description = ''
        `TimeoutStartSec` of `postgresql.service`, in seconds. nixpkgs' unit is `Type=notify`
        with `TimeoutSec=120`: a start that is not ready within it is killed and, with
        `Restart=always`, started again. A restored cluster that barkeep starts paused at its
        target is ready only once recovery has replayed the WAL up to a consistent state, which
        for a large or busy backup takes longer than 2 minutes; crash recovery after an unclean
        stop may too. The stop timeout stays nixpkgs' 120 s.
      '';
    };

    archiveTimeout = mkOption {
      type = types.ints.unsigned;
      default = 900;
      description = ''
        PostgreSQL's `archive_timeout` in seconds: the longest time a committed transaction
        may wait in an unfinished WAL segment before it is archived, i.e. the worst-case data
        loss window if the host is lost. 0 disables the timeout.
      '';
    };

    barman = {
      package = mkOption {
        type = types.package;
        # Python 3.10 is not in nixos-26.05: the flake's nixosModules.default sets this option to
        # Barman built with python310 from its nixos-25.11 input.
        default =
          if pkgs ? python310 then
            pkgs.callPackage ./barman.nix { withCloud = cfg.offsite.enable; }
          else
            throw ''
              services.barkeep.barman.package: this nixpkgs has no python310 (nixos-26.05 dropped it),
              and Barman 3.3.0 needs Python 3.10 or 3.11 (distutils). Import barkeep's flake module
              (nixosModules.default), which builds Barman with python310 from nixos-25.11, or set
              services.barkeep.barman.package yourself, e.g. to
              pkgs.callPackage "''${barkeep}/nixos-module/barman.nix" { python310 = <a Python 3.10>; }.
            '';
        defaultText = literalMD ''
          Barman 3.3.0 on Python 3.10, built by `nixos-module/barman.nix`, with boto3 for its
          cloud tools when [](#opt-services.barkeep.offsite.enable) is set; with the flake's
          `nixosModules.default`, Python 3.10 comes from nixos-25.11
        '';
        description = ''
          The Barman package. barkeep is written and tested against Barman 3.3.0. With
          [](#opt-services.barkeep.offsite.enable) it must be `nixos-module/barman.nix` built
          with `withCloud = true` (boto3 for `barman-cloud-*`, and `passthru.pythonEnv`, the
          interpreter barkeep lists the bucket with): the default does that.
        '';
      };

      server = mkOption {
        type = types.str;
        default = "pg";
        description = ''
          Barman's name for the server (the section in `/etc/barman.d/<server>.conf` and the
          directory `<barman_home>/<server>`). Letters, digits, `-` and `_` only.
        '';
      };

      keep = mkOption {
        type = types.ints.positive;
        default = 3;
        description = ''
          Retention: keep the last N backups (Barman's `retention_policy = REDUNDANCY N`,
          enforced by `barman cron`). WAL needed by the kept backups is kept as well.
        '';
      };

      timeoutSecs = mkOption {
        type = types.ints.positive;
        default = 3600;
        description = "Seconds before barkeep kills a barman command (a big recover takes minutes).";
      };

      cronSchedule = mkOption {
        type = types.str;
        default = "minutely";
        description = "When `barman cron` runs ({manpage}`systemd.time(7)` calendar event).";
      };

      backupSchedule = mkOption {
        type = types.str;
        default = "daily";
        example = "*-*-* 03:15:00";
        description = ''
          When `barman backup` runs, followed by `barman check-backup` of the new backup
          ({manpage}`systemd.time(7)` calendar event; missed runs are caught up at boot).
        '';
      };

      settings = mkOption {
        type = types.submodule {
          freeformType = settingsFormat.type;
          options.barman = mkOption {
            default = { };
            description = "The `[barman]` section of `/etc/barman.conf`.";
            type = types.submodule {
              freeformType = sectionType;
              options = {
                barman_user = mkOption {
                  type = types.str;
                  default = blib.barmanGlobalDefaults.barman_user;
                  description = ''
                    The user Barman runs as. It must be `postgres`: barkeep runs as this user and
                    must own the data directory, which the NixOS postgresql unit runs as.
                  '';
                };
                configuration_files_directory = mkOption {
                  type = absolutePath;
                  default = blib.barmanGlobalDefaults.configuration_files_directory;
                  description = "Directory of the per-server files; must be under `/etc`.";
                };
                barman_home = mkOption {
                  type = plainPath;
                  default = blib.barmanGlobalDefaults.barman_home;
                  description = "Barman's catalog: `<barman_home>/<server>/{base,wals,incoming,...}`.";
                };
                log_file = mkOption {
                  type = types.nullOr plainPath;
                  default = blib.barmanGlobalDefaults.log_file;
                  description = "Barman's log file (`null`: log to stderr only, i.e. the journal).";
                };
                log_level = mkOption {
                  type = types.enum [
                    "DEBUG"
                    "INFO"
                    "WARNING"
                    "ERROR"
                    "CRITICAL"
                  ];
                  default = blib.barmanGlobalDefaults.log_level;
                  description = "Barman's log level.";
                };
                compression = mkOption {
                  type = types.nullOr types.str;
                  default = blib.barmanGlobalDefaults.compression;
                  description = "Compression of archived WAL (`null`: none).";
                };
              };
            };
          };
        };
        default = { };
        example = literalExpression ''
          {
            barman.log_level = "DEBUG";
            barman.minimum_redundancy = 1;
          }
        '';
        description = ''
          `/etc/barman.conf` (freeform INI, see {manpage}`barman(5)`). The defaults are the
          documented local-rsync configuration; any other Barman 3.3 option may be added.
          A value of `null` removes a key.
        '';
      };

      serverSettings = mkOption {
        type = types.submodule {
          freeformType = sectionType;
          options = {
            description = mkOption {
              type = types.str;
              default = "PostgreSQL 14 protected by barkeep";
              description = "Barman's description of the server.";
            };
            conninfo = mkOption {
              type = types.str;
              default = blib.conninfo {
                inherit (cfg) database;
                port = pgPort;
              };
              defaultText = literalExpression ''"host=/run/postgresql user=postgres dbname=''${config.services.barkeep.database}"'';
              description = ''
                libpq connection string. Through the socket directory, so that the `postgres`
                OS user is authenticated by peer authentication (NixOS' `pg_hba.conf` asks for a
                password on TCP). ` port=N` is appended when PostgreSQL's port is not 5432.
              '';
            };
            backup_method = mkOption {
              type = types.str;
              default = "local-rsync";
              description = "Barman's backup method (barkeep is built around `local-rsync`).";
            };
            parallel_jobs = mkOption {
              type = types.ints.positive;
              default = 1;
              description = "rsync workers for backup and recover.";
            };
            archiver = mkOption {
              type = types.str;
              default = "on";
              description = "Archive WAL from the incoming directory (fed by archive_command).";
            };
            backup_options = mkOption {
              type = types.str;
              default = "concurrent_backup";
              description = "Backup API used by Barman.";
            };
            retention_policy = mkOption {
              type = types.nullOr types.str;
              default = "REDUNDANCY ${toString cfg.barman.keep}";
              defaultText = literalExpression ''"REDUNDANCY ''${toString config.services.barkeep.barman.keep}"'';
              description = "Retention policy; set [](#opt-services.barkeep.barman.keep) instead.";
            };
            path_prefix = mkOption {
              type = types.str;
              default = pgBinDir;
              defaultText = literalExpression ''"''${config.services.postgresql.package}/bin"'';
              description = "Where Barman finds the PostgreSQL client programs.";
            };
          };
        };
        default = { };
        description = ''
          The `[<server>]` section in `/etc/barman.d/<server>.conf` (freeform INI).
        '';
      };
    };

    offsite = {
      enable = mkEnableOption ''
        off-site copies: barkeep.service copies Barman's WAL and backups to S3-compatible storage
        with Barman 3.3's own cloud tools (`barman-cloud-wal-archive`, `barman-cloud-backup`),
        every [](#opt-services.barkeep.offsite.interval) seconds, never as Barman hook scripts,
        so Barman's local archiving never waits on the network. Barman is built with boto3 for
        it. See `docs/offsite.md`; `barkeep offsite status|replicate|list` as `postgres`
      '';

      endpointUrl = mkOption {
        type = types.strMatching "https?://[^[:space:][:cntrl:]]+" // {
          description = "http:// or https:// URL";
        };
        example = "https://s3.eu-west-1.amazonaws.com";
        description = ''
          The S3 endpoint the copies are sent to (`--endpoint-url` of the cloud tools):
          `https://s3.<region>.amazonaws.com` for AWS, `http://<host>:3900` for Garage.
        '';
      };

      bucketUrl = mkOption {
        type = types.str;
        example = "s3://acme-backups/barkeep/db1";
        description = ''
          Where the copies go, as an S3 URL: `s3://<bucket>` or `s3://<bucket>/<prefix>` (the
          bucket name 3 to 63 of `a-z 0-9 . -`; the prefix of letters, digits, `. - _` and `/`).
          Barman's cloud layout goes under it: `<prefix>/<server>/wals/...` and
          `<prefix>/<server>/base/<backup id>/...`, so one bucket can hold several hosts under
          different prefixes. The bucket must exist: barkeep never creates one (a typo would
          otherwise copy quietly into a new bucket).
        '';
      };

      region = mkOption {
        type = types.strMatching "[A-Za-z0-9_-]+" // {
          description = "region name (letters, digits, - and _)";
        };
        default = "us-east-1";
        example = "garage";
        description = ''
          The region requests are signed for: the bucket's region on AWS, the store's
          `s3_region` on Garage (`garage` in its documentation).
        '';
      };

      credentialsFile = mkOption {
        type = types.path;
        example = "/run/keys/barkeep-offsite";
        description = ''
          The S3 key, in the AWS shared-credentials format:

          ```ini
          [default]
          aws_access_key_id = GK...
          aws_secret_access_key = ...
          ```

          Give it as a string (`"/var/lib/barkeep/offsite-credentials"`,
          `"/run/keys/barkeep-offsite"`, a sops-nix or agenix secret): it must NOT be in the
          Nix store (readable by every local user; asserted). barkeep runs as `postgres` and
          refuses a file its group or others can read: owner `postgres`, mode `0600`. It is
          read when a replication runs, not at evaluation, so it may be deployed after the
          system. Under `/run/keys` (root:keys 0750) barkeep.service gets the supplementary
          group `keys` to reach it, and the commands that reach the bucket by hand need it too:
          `runuser -u postgres -g postgres -G keys -- barkeep offsite list`. `/home`, `/root`,
          `/run/user` and `/tmp` are hidden from the unit (asserted). The cloud tools get it as
          `AWS_SHARED_CREDENTIALS_FILE` and nothing else (`AWS_CONFIG_FILE=/dev/null`; the
          AWS key and profile variables of barkeep's environment are removed).
        '';
      };

      interval = mkOption {
        type = types.ints.positive;
        default = 60;
        description = ''
          Seconds between two replication runs of barkeep.service (`offsite.interval_secs`):
          the longest a new WAL file or backup waits before it is copied. A failed run (the
          store unreachable) is recorded with its reason and tried again at the next one.
        '';
      };
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = lib.versions.major pgPackage.version == "14";
        message = ''
          services.barkeep supports PostgreSQL 14 only (Barman 3.3.0 and the documented
          procedure are pinned to it), but services.postgresql.package is version ${pgPackage.version}.
          Use pkgs.postgresql_14 (the default this module sets).
        '';
      }
      {
        assertion = blib.isPlainName server && server != "barman";
        message = ''
          services.barkeep.barman.server = ${builtins.toJSON server} is not a plain name: use letters,
          digits, - and _ only, and not "barman" (the name of barman.conf's global section).
        '';
      }
      {
        assertion = blib.isPlainName cfg.database;
        message = ''
          services.barkeep.database = ${builtins.toJSON cfg.database} is not a plain name: use letters,
          digits, - and _ only (it is written into pg_hba.conf and SQL).
        '';
      }
      {
        assertion = !blib.isPlainName cfg.database || firstVerifyRule == verifyHbaLine;
        message = ''
          services.postgresql.authentication: the first rule that applies to barkeep's verify role
          (${cfg.verifyRole}) connecting to ${cfg.database} must be barkeep's
          "${verifyHbaLine}", found ${builtins.toJSON firstVerifyRule}. Do not replace the
          authentication with mkForce without keeping that line first.
        '';
      }
      {
        assertion = lib.elem verifyIdentLine (map lib.trim (lib.splitString "\n" pgCfg.identMap));
        message = ''
          services.postgresql.identMap must contain "${verifyIdentLine}" (barkeep's OS user may
          connect as its verify role), found:
          ${pgCfg.identMap}
        '';
      }
      {
        assertion = blib.isIpLiteral cfg.listenAddress;
        message = ''
          services.barkeep.listenAddress = ${builtins.toJSON cfg.listenAddress} must be an IP address
          (e.g. 127.0.0.1, 0.0.0.0, ::1), not a host name.
        '';
      }
      {
        assertion = cfg.usersFile != null || blib.isLoopback cfg.listenAddress;
        message = ''
          services.barkeep.listenAddress = ${builtins.toJSON cfg.listenAddress} is not a loopback
          address, so the UI is reachable from other hosts: set services.barkeep.usersFile (the
          login's password file) as well.
        '';
      }
      {
        assertion = barmanUser == "postgres";
        message = ''
          services.barkeep.barman.settings.barman.barman_user = ${builtins.toJSON barmanUser}: it must
          be "postgres". barkeep runs as Barman's user and must own the data directory (it renames
          it during a restore), and the NixOS postgresql unit runs as postgres.
        '';
      }
      {
        assertion =
          pgCfg.settings.archive_command or null == archiveCommand
          && pgCfg.settings.archive_mode or null == "on"
          && pgCfg.settings.wal_level or null == "replica";
        message = ''
          services.postgresql.settings.{wal_level, archive_mode, archive_command} were overridden
          (found ${builtins.toJSON (pgCfg.settings.wal_level or null)}, ${builtins.toJSON (pgCfg.settings.archive_mode or null)},
          ${builtins.toJSON (pgCfg.settings.archive_command or null)}). barkeep needs
          "replica", "on" and ${builtins.toJSON archiveCommand}: this is the command it restores after a recovery.
        '';
      }
      {
        assertion = lib.hasPrefix "/etc/" global.configuration_files_directory;
        message = ''
          services.barkeep.barman.settings.barman.configuration_files_directory must be under /etc
          (the module writes <server>.conf there), found ${global.configuration_files_directory}.
        '';
      }
      {
        assertion =
          let
            inside = parent: dir: dir == parent || lib.hasPrefix "${parent}/" dir;
          in
          !(inside pgCfg.dataDir cfg.stateDir)
          && !(inside cfg.stateDir pgCfg.dataDir)
          && !(inside barmanHome cfg.stateDir);
        message = ''
          services.barkeep.stateDir (${cfg.stateDir}) must be outside the data directory
          (${pgCfg.dataDir}) and Barman's home (${barmanHome}), and must not contain the data
          directory: a restore renames the data directory into it.
        '';
      }
      {
        assertion = renameRoot != "/";
        message = ''
          services.barkeep.stateDir (${cfg.stateDir}) and the parent of services.postgresql.dataDir
          (${dirOf pgCfg.dataDir}) share no directory but /. They must be on the same filesystem
          (a restore renames the data directory into stateDir), and barkeep's unit makes their
          common parent writable: put them under one directory, e.g. /var/lib.
        '';
      }
      {
        assertion = !offsite.enable || blib.isBucketUrl offsite.bucketUrl;
        message = ''
          services.barkeep.offsite.bucketUrl = ${builtins.toJSON offsite.bucketUrl} is not an S3 URL:
          write s3://<bucket> or s3://<bucket>/<prefix> (the bucket 3 to 63 of a-z 0-9 . -, the
          prefix of letters, digits, . - _ and /).
        '';
      }
      {
        assertion = !offsite.enable || (blib.isAbsolutePath credentialsFile && !blib.isStorePath credentialsFile);
        message = ''
          services.barkeep.offsite.credentialsFile = ${builtins.toJSON credentialsFile} must be an absolute
          path outside the Nix store (every local user can read the store): give the path of the
          deployed file as a string, e.g. "/run/keys/barkeep-offsite", owned by postgres, mode 0600.
        '';
      }
      {
        assertion = !offsite.enable || !lib.any (d: lib.hasPrefix d credentialsFile) hiddenFromUnit;
        message = ''
          services.barkeep.offsite.credentialsFile = ${builtins.toJSON credentialsFile}: barkeep.service
          cannot see it (ProtectHome hides /home, /root and /run/user, PrivateTmp /tmp and /var/tmp).
          Put it e.g. in /var/lib/barkeep or /run/keys.
        '';
      }
      {
        assertion = !offsite.enable || barmanHasCloud;
        message = ''
          services.barkeep.offsite needs Barman's cloud tools with boto3, but
          services.barkeep.barman.package (${cfg.barman.package.name or "?"}) is not nixos-module/barman.nix
          built with withCloud = true (the module's and the flake's default when offsite is enabled).
        '';
      }
      {
        assertion = config.security.polkit.enable;
        message = ''
          services.barkeep needs security.polkit.enable: it starts and stops postgresql.service
          through a polkit rule for the postgres user.
        '';
      }
    ];

    warnings =
      optional (lib.getVersion cfg.barman.package != "3.3.0") ''
        services.barkeep.barman.package is Barman ${lib.getVersion cfg.barman.package}; barkeep reads
        Barman's on-disk catalog and is tested against 3.3.0 only.
      ''
      ++ optional (!ownDatabase) ''
        services.barkeep.database is "postgres", which belongs to the PostgreSQL superuser: barkeep's
        verify role (${cfg.verifyRole}) is granted nothing (a member of a superuser's role can become
        superuser), so verify queries can read only what PUBLIC may read. Set
        services.barkeep.database to the application's database (owned by the role of that name).
      '';

    # --- PostgreSQL 14 with continuous archiving into Barman's incoming directory -------------
    services.postgresql = {
      enable = true;
      # nixpkgs' postgresql module defines the package itself with mkDefault (by stateVersion): one
      # step above it, still below any plain definition of the host (checked by the assertion).
      package = mkOverride 999 pkgs.postgresql_14;
      settings = blib.postgresqlSettings {
        inherit barmanHome server;
        inherit (cfg) archiveTimeout;
      };
      ensureDatabases = optional ownDatabase cfg.database;
      ensureUsers =
        optional ownDatabase {
          name = cfg.database;
          ensureDBOwnership = true;
        }
        ++ [
          {
            name = cfg.verifyRole;
            ensureClauses = {
              login = true;
              superuser = false;
              createdb = false;
              createrole = false;
              replication = false;
              bypassrls = false;
            };
          }
        ];
      # First-match: before nixpkgs' defaults (mkAfter) and the host's own rules.
      authentication = mkBefore verifyHbaLine;
      identMap = verifyIdentLine;
    };

    # nixpkgs' postgresql.target requires postgresql-setup.service, which waits for the server
    # to leave recovery, then creates databases and roles (ensureDatabases/ensureUsers).
    systemd.services.postgresql-setup = {
      # Skipped with postgresql.service while a restore holds the data directory: it would
      # otherwise find no server and exit 1 (a failed unit).
      unitConfig = postgresqlStartConditions;
      # barkeep stops postgresql.service while this unit still waits for a paused restore to
      # leave recovery (a roll back, a retry); Requires= stops it first, with SIGTERM. For a
      # Type=oneshot unit systemd counts that as a failure unless the signal is listed here.
      serviceConfig.SuccessExitStatus = "SIGTERM";
      script = mkMerge [
        (mkBefore blib.setupWaitWhileRecovering)
        # After ensureUsers: both roles exist and the database belongs to its owner role.
        (mkAfter ''
          # barkeep: ${cfg.verifyRole} is a member of ${cfg.database}'s owner role and nothing else
          psql -d postgres -X -v ON_ERROR_STOP=1 <<'BARKEEP_SQL'
          ${blib.verifyGrantSql {
            role = cfg.verifyRole;
            owner = cfg.database;
          }}
          BARKEEP_SQL
        '')
      ];
    };

    systemd.services.postgresql = {
      # The unit is ProtectSystem=strict: archive_command writes outside the data directory.
      serviceConfig.ReadWritePaths = [ incoming ];
      # Never initdb into the empty data directory of a restore in progress, whoever asks for
      # the start (a Requires= of some application, a restart, a reboot): see lib.nix. This is
      # a start condition rather than `systemctl mask --runtime`, which barkeep could not be
      # allowed to do without root-equivalent rights (polkit cannot scope
      # org.freedesktop.systemd1.manage-unit-files to one unit) and which a reboot forgets.
      # A paused restore is ready (Type=notify) only once replay is consistent.
      serviceConfig.TimeoutStartSec = cfg.postgresqlStartTimeout;
      unitConfig = postgresqlStartConditions // {
          # nixpkgs allows 5 starts per ~10 minutes; one restore starts the unit up to three
          # times (paused start, retry, roll back). Condition-skipped starts do not count.
          StartLimitBurst = mkOverride 90 20;
        };
    };

    # --- Barman 3.3.0 ---------------------------------------------------------------------
    environment.etc."barman.conf".text = blib.renderIni cfg.barman.settings;
    environment.etc.${serverConfEtc}.text = blib.renderIni { ${server} = cfg.barman.serverSettings; };
    environment.etc."barkeep/barkeep.toml".text = barkeepToml;

    environment.systemPackages = [
      cfg.package
      cfg.barman.package
      pkgs.rsync
    ];

    systemd.tmpfiles.rules = [
      "d ${barmanHome} 0750 ${barmanUser} ${barmanUser} - -"
      "d ${barmanHome}/${server} 0750 ${barmanUser} ${barmanUser} - -"
      "d ${incoming} 0750 ${barmanUser} ${barmanUser} - -"
      "d ${cfg.stateDir} 0700 ${barmanUser} ${barmanUser} - -"
    ]
    ++ optional (logFile != null) "f ${logFile} 0640 ${barmanUser} ${barmanUser} - -";

    # None of these units wants or requires postgresql.service: starting one of them must never
    # start PostgreSQL (during a restore its data directory is empty). Ordering only.

    # Once per boot, after PostgreSQL is up: `barman check` creates the server's directories,
    # `switch-wal --force --archive` makes the first WAL arrive, the second check must be all OK.
    systemd.services.barman-init = {
      description = "Barman: initialise server ${server} (check, switch-wal --archive)";
      wantedBy = [ "multi-user.target" ];
      after = [
        "postgresql.service"
        "postgresql.target"
        "systemd-tmpfiles-setup.service"
      ];
      path = [ cfg.barman.package ];
      environment = barmanEnvironment;
      serviceConfig = hardening // {
        Type = "oneshot";
        RemainAfterExit = true;
        ReadWritePaths = barmanReadWrite ++ [ cfg.stateDir ];
      };
      script = ''
        ${barman [ "check" server ]} || true # before the first WAL: "WAL archive: FAILED"
        ${barman [ "switch-wal" "--force" "--archive" server ]}
        ${barman [ "check" server ]}
        # From now on an empty data directory is a restore in progress, never a fresh install.
        echo "barkeep protects the cluster in ${pgCfg.dataDir}; see barkeep's NixOS module" \
          > ${lib.escapeShellArg "${cfg.stateDir}/initdb-guard"}
      '';
    };

    systemd.services.barman-cron = {
      description = "Barman maintenance: archive WAL, enforce retention";
      after = [
        "postgresql.service"
        "barman-init.service"
      ];
      environment = barmanEnvironment;
      serviceConfig = hardening // {
        Type = "oneshot";
        ExecStart = barman [
          "-q"
          "cron"
        ];
        ReadWritePaths = barmanReadWrite;
        # `barman cron` starts archive-wal detached and returns at once; the default
        # KillMode=control-group would kill that child as soon as cron exits.
        KillMode = "process";
      };
    };
    systemd.timers.barman-cron = {
      description = "Run barman cron every minute";
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnCalendar = cfg.barman.cronSchedule;
        Persistent = true;
        AccuracySec = "1s";
        Unit = "barman-cron.service";
      };
    };

    systemd.services.barman-backup = {
      description = "Barman backup of server ${server}, then check-backup";
      after = [
        "postgresql.service"
        "barman-init.service"
      ];
      environment = barmanEnvironment;
      serviceConfig = hardening // {
        Type = "oneshot";
        ReadWritePaths = barmanReadWrite;
      };
      script = ''
        ${barman [ "backup" "--wait" server ]}
        ${barman [ "check-backup" server "latest" ]}
      '';
    };
    systemd.timers.barman-backup = {
      description = "Daily Barman backup";
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnCalendar = cfg.barman.backupSchedule;
        Persistent = true;
        Unit = "barman-backup.service";
      };
    };

    # --- barkeep --------------------------------------------------------------------------
    security.polkit.enable = mkDefault true;
    security.polkit.extraConfig = blib.polkitRule {
      user = barmanUser;
      unit = "postgresql.service";
    };

    networking.firewall.allowedTCPPorts = optional cfg.openFirewall cfg.port;

    systemd.services.barkeep = {
      description = "barkeep: point-in-time recovery of PostgreSQL";
      wantedBy = [ "multi-user.target" ];
      after = [
        "network.target"
        "postgresql.service"
        "barman-init.service"
      ];
      path = [
        cfg.barman.package
        pkgs.rsync
        pgPackage
      ];
      environment = {
        LEPTOS_SITE_ROOT = "${cfg.package}/share/barkeep/site";
        LEPTOS_SITE_ADDR = listen;
        LEPTOS_OUTPUT_NAME = "barkeep";
        LEPTOS_SITE_PKG_DIR = "pkg";
        LEPTOS_ENV = "PROD";
        RUST_LOG = mkDefault "info";
        HOME = cfg.stateDir;
      };
      restartTriggers = [ barkeepToml ];
      # A restore survives a restart (journal), but do not stop it for longer than needed.
      stopIfChanged = false;
      serviceConfig = hardening // {
        ExecStart = "${cfg.package}/bin/barkeep serve --config ${configFile}";
        Restart = "on-failure";
        RestartSec = "5s";
        # A restore renames the data directory into stateDir and runs `barman recover` (rsync)
        # into a fresh one; Barman writes its catalog and log. Each ReadWritePaths entry is a
        # bind mount of its own and rename(2) across mounts fails with EXDEV even on one
        # filesystem: so the directory that contains both the data directory's parent and
        # stateDir (/var/lib by default) is made writable as ONE entry. File permissions still
        # apply (the service runs as postgres, without capabilities).
        ReadWritePaths = [ renameRoot ] ++ barmanReadWrite;
        # The off-site store is reached over AF_INET/AF_INET6, which the hardening allows
        # (no IPAddressDeny, no PrivateNetwork): nothing to open for it.
        SupplementaryGroups = mkIf (offsite.enable && underRunKeys) [ "keys" ];
      };
    };
  };
}
