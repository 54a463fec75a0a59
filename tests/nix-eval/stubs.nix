# Stand-ins for nixpkgs, for evaluating nixos-module/default.nix and flake.nix with nixpkgs'
# `lib` alone (no Nix cache here, and full nixpkgs 25.11+ refuses Nix < 2.18).
#
# They must fail where the real nixpkgs fails, so they carry the real interface, not a
# convenient one. Each fact mirrored below names the nixpkgs file it comes from (nixos-26.05,
# as far as it could be read; docs/nix.md lists them):
#
#  - pkgs2605 / pkgs2511: package sets with the attribute NAMES the pinned nixos-26.05 and
#    nixos-25.11 really have, for the names this repository's files ask for. `callPackage` is
#    nixpkgs' own `lib.callPackageWith` over them, so a file whose `builtins.functionArgs` name
#    an attribute the release does not have aborts exactly as in nixpkgs. 26.05 has NO
#    `python310` (pkgs/development/interpreters/python/default.nix, "python310: drop", NixOS/nixpkgs
#    PR #490538); 25.11 still has it. A name missing here that the release does have fails
#    loudly too: add it after checking the release, never to make a test pass.
#  - postgresqlModule: nixos/modules/services/databases/postgresql.nix, the options barkeep
#    touches and ALL of the module's config-side definitions that can collide or interleave
#    with barkeep's: `package = mkDefault ...` (by system.stateVersion), `dataDir = mkDefault`,
#    the authentication / identMap defaults with their mkBefore/mkAfter ordering, settings
#    (hba_file, ident_file, ...), the ensureDBOwnership assertion, postgresql.target,
#    postgresql.service (Type=notify, TimeoutSec=120, Restart=always, StartLimitBurst=5,
#    StartLimitIntervalSec) and postgresql-setup.service with its script, generated the same way.
#  - garageModule: nixos/modules/services/web-servers/garage.nix, whole (options and config), for
#    the off-site store of tests/vm-offsite.nix: `package` has no default, `settings` is freeform
#    TOML with typed `metadata_dir` and `data_dir`, the unit is DynamicUser with StateDirectory
#    garage, and the `garage` CLI in systemPackages is a wrapper reading /etc/garage.toml.
#  - nixosOptions: the other NixOS options the modules set, typed as NixOS types them where
#    merging matters: systemd units use nixos/lib/systemd-unit-options.nix' `unitOption` (lists
#    concatenate, two different values at one priority conflict) and its Type/Restart check;
#    unknown unit attributes are errors, as in NixOS.
# Left out (nothing of barkeep's depends on them): users.users/groups, systemCallFilter,
# environment.pathsToLink, system.checks, the JIT/extension plumbing of finalPackage.
{ lib }:
let
  inherit (lib)
    any
    concatMap
    concatMapStrings
    concatStringsSep
    elem
    filterAttrs
    isList
    literalExpression
    mapAttrs
    mkAfter
    mkBefore
    mkDefault
    mkIf
    mkMerge
    mkOption
    mkOptionType
    optionalString
    toList
    types
    versionAtLeast
    ;

  fakeDrv =
    name: attrs:
    {
      type = "derivation";
      inherit name;
      outPath = "${builtins.storeDir}/${builtins.substring 0 32 (builtins.hashString "sha256" name)}-${name}";
    }
    // attrs;

  fakePostgresql =
    version:
    let
      self = fakeDrv "postgresql-${version}" {
        pname = "postgresql";
        inherit version;
        psqlSchema = lib.versions.major version;
        withJIT = self;
        withoutJIT = self;
        withPackages = _: self;
      };
    in
    self;

  iniAtom = types.nullOr (
    types.oneOf [
      types.bool
      types.int
      types.float
      types.str
    ]
  );

  # Builders that check their arguments the way the real ones do and return a fake derivation
  # carrying what the tests look at.
  mkDrvFrom =
    args:
    fakeDrv "${args.pname}-${args.version}" (
      {
        inherit (args) pname version;
        passthru = args.passthru or { };
        meta = args.meta or { };
      }
      // args.passthru or { }
    );

  # python310 of nixos-25.11 (pkgs/development/interpreters/python/default.nix there), with the
  # few python packages barman.nix asks for. As in pkgs/development/interpreters/python/
  # python-packages-base.nix and mk-python-derivation.nix: an application's `dependencies` are
  # propagated (with the interpreter), `toPythonModule` marks a derivation as providing modules
  # for this interpreter (passthru only), and `withPackages` keeps only what provides modules
  # (requiredPythonModules): an application passed as it is is dropped without a word.
  python310 = lib.fix (
    python:
    fakeDrv "python3-3.10" {
      version = "3.10";
      pythonVersion = "3.10";
      withPackages =
        f:
        let
          modules = builtins.filter (d: d ? pythonModule && d.pythonModule == python) (f python.pkgs);
        in
        fakeDrv "python3-3.10-env" {
          inherit modules;
          pythonVersion = "3.10";
        };
      pkgs =
        let
          module =
            pname:
            fakeDrv "python3.10-${pname}" {
              inherit pname;
              pythonModule = python;
            };
        in
        {
          buildPythonApplication =
            args:
            assert lib.assertMsg (args ? pname && args ? version && args ? src) "buildPythonApplication: pname, version, src";
            mkDrvFrom args
            // {
              pythonVersion = "3.10";
              propagatedBuildInputs = (args.dependencies or [ ]) ++ [ python ];
              makeWrapperArgs = args.makeWrapperArgs or [ ];
              pythonImportsCheck = args.pythonImportsCheck or [ ];
            };
          toPythonModule = drv: drv // { pythonModule = python; };
          fetchPypi =
            {
              pname,
              version,
              hash,
              ...
            }:
            fakeDrv "${pname}-${version}.tar.gz" { inherit pname version hash; };
          setuptools = module "setuptools";
          argcomplete = module "argcomplete";
          psycopg2 = module "psycopg2";
          python-dateutil = module "python-dateutil";
          # pkgs/development/python-modules/boto3 (attribute `boto3` of every python package
          # set, pkgs/top-level/python-packages.nix); its version at the 25.11 pin is not known here.
          boto3 = module "boto3";
        };
    }
  );

  fakeGarage =
    version:
    fakeDrv "garage-${version}" {
      pname = "garage";
      inherit version;
      meta.mainProgram = "garage";
    };

  pythonNewer =
    v:
    fakeDrv "python3-${v}" {
      version = v;
      pythonVersion = v;
    };

  # The package names of nixos-26.05 this repository uses, plus the ones a typo or an old
  # habit would reach for (so callPackage can suggest them, as nixpkgs does).
  pkgs2605 = lib.fix (
    self:
    {
      inherit lib;
      stdenv.hostPlatform.system = "x86_64-linux";
      postgresql_14 = fakePostgresql "14.23";
      postgresql_16 = fakePostgresql "16.10";
      postgresql_17 = fakePostgresql "17.6";
      rsync = fakeDrv "rsync-3.4.1" { version = "3.4.1"; };
      curl = fakeDrv "curl-8" { };
      # pkgs/tools/filesystems/garage/default.nix: garage_1, garage_2 and `garage` (= garage_1 in
      # the version read here); the 2.x at the pin may be later than 2.3.0.
      garage_1 = fakeGarage "1.3.1";
      garage_2 = fakeGarage "2.3.0";
      garage = fakeGarage "1.3.1";
      nixfmt = fakeDrv "nixfmt" { };
      # No python310: dropped before the 26.05 branch-off (NixOS/nixpkgs#490538).
      python3 = pythonNewer "3.13";
      python311 = pythonNewer "3.11";
      python312 = pythonNewer "3.12";
      python313 = pythonNewer "3.13";
      # Rust: versions per the pin's documentation (docs/nix.md); only a Nix machine can
      # confirm them.
      rustc = fakeDrv "rustc-1.95.0" {
        version = "1.95.0";
        llvmPackages.lld = fakeDrv "lld" { };
      };
      cargo-leptos = fakeDrv "cargo-leptos" { };
      binaryen = fakeDrv "binaryen" { };
      makeWrapper = fakeDrv "make-wrapper-hook" { };
      rustPlatform = {
        buildRustPackage =
          args:
          assert lib.assertMsg (
            args ? cargoLock || args ? cargoHash || args ? cargoDeps
          ) "buildRustPackage: one of cargoLock, cargoHash, cargoDeps";
          mkDrvFrom args;
        importCargoLock = { lockFile, ... }@args: fakeDrv "cargo-vendor-dir" args;
      };
      # pkgs/build-support/wasm-bindgen-cli/default.nix: exactly these arguments.
      buildWasmBindgenCli =
        {
          version ? src.version,
          src,
          cargoDeps,
        }:
        mkDrvFrom {
          pname = "wasm-bindgen-cli";
          inherit version;
          passthru = { inherit src cargoDeps; };
        };
      fetchCrate =
        { version, ... }@args:
        fakeDrv "${args.pname}-${version}.tar.gz" args;
      writeText = name: text: fakeDrv name { inherit text; };
      writeScriptBin = name: text: fakeDrv name { inherit text; };
      # pkgs/pkgs-lib/formats.nix: a TOML value is null, bool, int, float, str, path, or a list
      # or attribute set of TOML values.
      formats.toml =
        { }:
        {
          type =
            let
              valueType =
                types.nullOr (
                  types.oneOf [
                    types.bool
                    types.int
                    types.float
                    types.str
                    types.path
                    (types.attrsOf valueType)
                    (types.listOf valueType)
                  ]
                )
                // {
                  description = "TOML value";
                };
            in
            valueType;
          generate = name: _value: fakeDrv name { };
        };
      formats.ini =
        { ... }:
        {
          type = types.attrsOf (types.attrsOf iniAtom);
          generate = name: _value: fakeDrv name { };
        };
      runCommand =
        name: _env: _script:
        fakeDrv name { };
      testers.runNixOSTest = args: args;
      mkShell = args: args // { name = "nix-shell"; };
    }
    // {
      callPackage = lib.callPackageWith self;
    }
  );

  # nixos-25.11: taken for Barman's interpreter only (flake.nix's nixpkgs-python310 input).
  pkgs2511 = lib.fix (
    self:
    {
      inherit lib python310;
      stdenv.hostPlatform.system = "x86_64-linux";
      rsync = fakeDrv "rsync-3.4.1" { version = "3.4.1"; };
      python3 = pythonNewer "3.13";
      python311 = pythonNewer "3.11";
    }
    // {
      callPackage = lib.callPackageWith self;
    }
  );

  # --- systemd units, as nixos/lib/systemd-unit-options.nix types them ---------------------------
  unitOption = mkOptionType {
    name = "systemd option";
    merge =
      loc: defs:
      let
        defs' = lib.filterOverrides defs;
      in
      if any (def: isList def.value) defs' then
        concatMap (def: toList def.value) defs'
      else
        lib.mergeEqualOption loc defs';
  };

  checkService =
    v:
    (!(v ? Type) || elem v.Type [
      "exec"
      "simple"
      "forking"
      "oneshot"
      "dbus"
      "notify"
      "notify-reload"
      "idle"
    ])
    && (
      !(v ? Restart)
      || elem v.Restart [
        "no"
        "on-success"
        "on-failure"
        "on-abnormal"
        "on-abort"
        "always"
      ]
    );

  unitNames = mkOption {
    type = types.listOf types.str;
    default = [ ];
  };

  commonUnitOptions = {
    description = mkOption {
      type = types.singleLineStr;
      default = "";
    };
    wantedBy = unitNames;
    requiredBy = unitNames;
    requires = unitNames;
    wants = unitNames;
    after = unitNames;
    before = unitNames;
    bindsTo = unitNames;
    partOf = unitNames;
    conflicts = unitNames;
    requisite = unitNames;
    unitConfig = mkOption {
      type = types.attrsOf unitOption;
      default = { };
    };
  };

  serviceType = types.submodule {
    options = commonUnitOptions // {
      serviceConfig = mkOption {
        type = types.addCheck (types.attrsOf unitOption) checkService;
        default = { };
      };
      environment = mkOption {
        type = types.attrsOf (
          types.nullOr (
            types.oneOf [
              types.str
              types.path
              types.package
            ]
          )
        );
        default = { };
      };
      path = mkOption {
        type = types.listOf (types.oneOf [
          types.package
          types.str
        ]);
        default = [ ];
      };
      script = mkOption {
        type = types.lines;
        default = "";
      };
      preStart = mkOption {
        type = types.lines;
        default = "";
      };
      postStart = mkOption {
        type = types.lines;
        default = "";
      };
      restartTriggers = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
      };
      stopIfChanged = mkOption {
        type = types.bool;
        default = true;
      };
      restartIfChanged = mkOption {
        type = types.bool;
        default = true;
      };
      startAt = mkOption {
        type = types.either types.str (types.listOf types.str);
        default = [ ];
      };
    };
  };

  targetType = types.submodule { options = commonUnitOptions; };

  timerType = types.submodule {
    options = commonUnitOptions // {
      timerConfig = mkOption {
        type = types.attrsOf unitOption;
        default = { };
      };
    };
  };

  # --- nixos/modules/services/databases/postgresql.nix ---------------------------------------
  postgresqlModule = {
    _file = "nixos/modules/services/databases/postgresql.nix (stand-in in tests/nix-eval/stubs.nix)";
    imports = [ postgresqlModuleBody ];
  };
  postgresqlModuleBody =
    { config, pkgs, ... }:
    let
      cfg = config.services.postgresql;
      toStr =
        value:
        if true == value then
          "yes"
        else if false == value then
          "no"
        else if lib.isString value then
          "'${lib.replaceStrings [ "'" ] [ "''" ] value}'"
        else
          builtins.toString value;
      configFile = pkgs.writeText "postgresql.conf" (
        concatStringsSep "\n" (
          lib.mapAttrsToList (n: v: "${n} = ${toStr v}") (filterAttrs (_: x: x != null) cfg.settings)
        )
      );
      nullableBool = mkOption {
        type = types.nullOr types.bool;
        default = null;
      };
    in
    {
      options.services.postgresql = {
        enable = lib.mkEnableOption "PostgreSQL Server";
        enableJIT = lib.mkEnableOption "JIT support";
        package = mkOption {
          type = types.package;
          example = literalExpression "pkgs.postgresql_15";
        };
        finalPackage = mkOption {
          type = types.package;
          readOnly = true;
          default = if cfg.enableJIT then cfg.package.withJIT else cfg.package.withoutJIT;
        };
        dataDir = mkOption { type = types.path; };
        authentication = mkOption {
          type = types.lines;
          default = "";
        };
        identMap = mkOption {
          type = types.lines;
          default = "";
        };
        initdbArgs = mkOption {
          type = types.listOf types.str;
          default = [ ];
        };
        initialScript = mkOption {
          type = types.nullOr types.path;
          default = null;
        };
        ensureDatabases = mkOption {
          type = types.listOf types.str;
          default = [ ];
        };
        ensureUsers = mkOption {
          type = types.listOf (
            types.submodule {
              options = {
                name = mkOption { type = types.str; };
                ensureDBOwnership = mkOption {
                  type = types.bool;
                  default = false;
                };
                ensureClauses = mkOption {
                  default = { };
                  type = types.submodule {
                    options = {
                      superuser = nullableBool;
                      createrole = nullableBool;
                      createdb = nullableBool;
                      "inherit" = nullableBool;
                      login = nullableBool;
                      replication = nullableBool;
                      bypassrls = nullableBool;
                    };
                  };
                };
              };
            }
          );
          default = [ ];
        };
        enableTCPIP = mkOption {
          type = types.bool;
          default = false;
        };
        settings = mkOption {
          type = types.submodule {
            freeformType = types.attrsOf (
              types.oneOf [
                types.bool
                types.float
                types.int
                types.str
              ]
            );
            options = {
              shared_preload_libraries = mkOption {
                type = types.nullOr (types.coercedTo (types.listOf types.str) (concatStringsSep ",") types.commas);
                default = null;
              };
              log_line_prefix = mkOption {
                type = types.str;
                default = "[%p] ";
              };
              port = mkOption {
                type = types.port;
                default = 5432;
              };
            };
          };
          default = { };
        };
        superUser = mkOption {
          type = types.str;
          default = "postgres";
          internal = true;
          readOnly = true;
        };
      };

      config = mkIf cfg.enable {
        warnings =
          let
            unstableState =
              if lib.hasInfix "beta" cfg.package.version then
                "in beta"
              else if lib.hasInfix "rc" cfg.package.version then
                "a release candidate"
              else
                null;
          in
          lib.optional (
            unstableState != null
          ) "PostgreSQL ${lib.versions.major cfg.package.version} is currently ${unstableState}, and is not advised for use in production environments.";

        assertions = map (
          { name, ensureDBOwnership, ... }:
          {
            assertion = ensureDBOwnership -> elem name cfg.ensureDatabases;
            message = ''
              For each database user defined with `services.postgresql.ensureUsers` and
              `ensureDBOwnership = true;`, a database with the same name must be defined
              in `services.postgresql.ensureDatabases`.

              Offender: ${name} has not been found among databases.
            '';
          }
        ) cfg.ensureUsers;

        services.postgresql.settings = {
          hba_file = "${pkgs.writeText "pg_hba.conf" cfg.authentication}";
          ident_file = "${pkgs.writeText "pg_ident.conf" cfg.identMap}";
          log_destination = "stderr";
          listen_addresses = if cfg.enableTCPIP then "*" else "localhost";
          jit = mkDefault (if cfg.enableJIT then "on" else "off");
        };

        # The clash of issue 9: a second mkDefault elsewhere makes this option "defined
        # multiple times".
        services.postgresql.package =
          let
            base =
              if versionAtLeast config.system.stateVersion "25.11" then
                pkgs.postgresql_17
              else if versionAtLeast config.system.stateVersion "24.11" then
                pkgs.postgresql_16
              else if versionAtLeast config.system.stateVersion "23.11" then
                pkgs.postgresql_15
              else
                pkgs.postgresql_14;
          in
          mkDefault (if cfg.enableJIT then base.withJIT else base);

        services.postgresql.dataDir = mkDefault "/var/lib/postgresql/${cfg.package.psqlSchema}";

        services.postgresql.authentication = mkMerge [
          (mkBefore "# Generated file; do not edit!")
          (mkAfter ''
            # default value of services.postgresql.authentication
            local all postgres         peer map=postgres
            local all all              peer
            host  all all 127.0.0.1/32 md5
            host  all all ::1/128      md5
          '')
        ];

        services.postgresql.identMap = mkAfter ''
          postgres postgres postgres
        '';

        environment.systemPackages = [ cfg.finalPackage ];

        systemd.targets.postgresql = {
          description = "PostgreSQL";
          wantedBy = [ "multi-user.target" ];
          requires = [
            "postgresql.service"
            "postgresql-setup.service"
          ];
        };

        systemd.services.postgresql = {
          description = "PostgreSQL Server";
          after = [ "network.target" ];
          wants = [ "postgresql.target" ];
          partOf = [ "postgresql.target" ];
          environment.PGDATA = cfg.dataDir;
          path = [ cfg.finalPackage ];
          preStart = ''
            if ! test -e ${cfg.dataDir}/PG_VERSION; then
              # Cleanup the data directory.
              rm -f ${cfg.dataDir}/*.conf

              # Initialise the database.
              initdb -U ${cfg.superUser} ${lib.escapeShellArgs cfg.initdbArgs}

              # See postStart!
              touch "${cfg.dataDir}/.first_startup"
            fi

            ln -sfn "${configFile}/postgresql.conf" "${cfg.dataDir}/postgresql.conf"
          '';
          serviceConfig = mkMerge [
            {
              User = "postgres";
              Group = "postgres";
              RuntimeDirectory = "postgresql";
              Type = "notify";
              KillSignal = "SIGINT";
              KillMode = "mixed";
              TimeoutSec = 120;
              ExecStart = "${cfg.finalPackage}/bin/postgres";
              Restart = "always";
              CapabilityBoundingSet = [ "" ];
              PrivateTmp = true;
              ProtectHome = true;
              ProtectSystem = "strict";
              NoNewPrivileges = true;
              RemoveIPC = true;
              UMask = "0027";
            }
            (mkIf (cfg.dataDir != "/var/lib/postgresql/${cfg.package.psqlSchema}") {
              ReadWritePaths = [ cfg.dataDir ];
            })
            (mkIf (cfg.dataDir == "/var/lib/postgresql/${cfg.package.psqlSchema}") {
              StateDirectory = "postgresql postgresql/${cfg.package.psqlSchema}";
              StateDirectoryMode = "0750";
            })
          ];
          unitConfig =
            let
              inherit (config.systemd.services.postgresql.serviceConfig) TimeoutSec;
              maxTries = 5;
              bufferSec = 5;
            in
            {
              RequiresMountsFor = "${cfg.dataDir}";
              StartLimitIntervalSec = TimeoutSec * maxTries + bufferSec;
              StartLimitBurst = maxTries;
            };
        };

        systemd.services.postgresql-setup = {
          description = "PostgreSQL Setup Scripts";
          requires = [ "postgresql.service" ];
          after = [ "postgresql.service" ];
          serviceConfig = {
            User = "postgres";
            Group = "postgres";
            Type = "oneshot";
            RemainAfterExit = true;
          };
          path = [ cfg.finalPackage ];
          environment.PGPORT = builtins.toString cfg.settings.port;
          script = ''
            check-connection() {
              psql -d postgres -v ON_ERROR_STOP=1 <<-'  EOF'
                SELECT pg_is_in_recovery() \gset
                \if :pg_is_in_recovery
                \i still-recovering
                \endif
              EOF
            }
            while ! check-connection 2> /dev/null; do
                if ! systemctl is-active --quiet postgresql.service; then exit 1; fi
                sleep 0.1
            done

            if test -e "${cfg.dataDir}/.first_startup"; then
              ${optionalString (cfg.initialScript != null) ''
                psql -f "${cfg.initialScript}" -d postgres
              ''}
              rm -f "${cfg.dataDir}/.first_startup"
            fi
          ''
          + optionalString (cfg.ensureDatabases != [ ]) ''
            ${concatMapStrings (database: ''
              psql -tAc "SELECT 1 FROM pg_database WHERE datname = '${database}'" | grep -q 1 || psql -tAc 'CREATE DATABASE "${database}"'
            '') cfg.ensureDatabases}
          ''
          + ''
            ${concatMapStrings (
              user:
              let
                dbOwnershipStmt = optionalString user.ensureDBOwnership ''psql -tAc 'ALTER DATABASE "${user.name}" OWNER TO "${user.name}";' '';
                filteredClauses = filterAttrs (name: value: value != null) user.ensureClauses;
                clauseSqlStatements = lib.attrValues (mapAttrs (n: v: if v then n else "no${n}") filteredClauses);
                userClauses = ''psql -tAc 'ALTER ROLE "${user.name}" ${concatStringsSep " " clauseSqlStatements}' '';
              in
              ''
                psql -tAc "SELECT 1 FROM pg_roles WHERE rolname='${user.name}'" | grep -q 1 || psql -tAc 'CREATE USER "${user.name}"'
                ${userClauses}

                ${dbOwnershipStmt}
              ''
            ) cfg.ensureUsers}
          '';
        };
      };
    };

  # --- nixos/modules/services/web-servers/garage.nix ----------------------------------------
  garageModule = {
    _file = "nixos/modules/services/web-servers/garage.nix (stand-in in tests/nix-eval/stubs.nix)";
    imports = [ garageModuleBody ];
  };
  garageModuleBody =
    { config, pkgs, ... }:
    let
      cfg = config.services.garage;
      toml = pkgs.formats.toml { };
      configFile = toml.generate "garage.toml" cfg.settings;
    in
    {
      options.services.garage = {
        enable = lib.mkEnableOption "Garage Object Storage (S3 compatible)";
        package = mkOption {
          description = "Garage package to use, needs to be set explicitly.";
          type = types.package;
        };
        environmentFile = mkOption {
          default = null;
          type = types.nullOr types.path;
        };
        extraEnvironment = mkOption {
          default = { };
          type = types.attrsOf types.str;
        };
        logLevel = mkOption {
          default = "info";
          type = types.enum [
            "error"
            "warn"
            "info"
            "debug"
            "trace"
          ];
        };
        settings = mkOption {
          type = types.submodule {
            options = {
              data_dir = mkOption {
                default = "/var/lib/garage/data";
                type = with types; either path (listOf attrs);
              };
              metadata_dir = mkOption {
                default = "/var/lib/garage/meta";
                type = types.path;
              };
            };
            freeformType = toml.type;
          };
        };
      };

      config = mkIf cfg.enable {
        environment.etc."garage.toml".source = configFile;
        environment.systemPackages = [
          (pkgs.writeScriptBin "garage" ''
            set -a
            [ -f ${lib.escapeShellArg cfg.environmentFile} ] && . ${lib.escapeShellArg cfg.environmentFile}
            exec ${lib.escapeShellArg (lib.getExe cfg.package)} "$@"
          '')
        ];
        systemd.services.garage = {
          after = [
            "network.target"
            "network-online.target"
          ];
          description = "Garage Object Storage (S3 compatible)";
          environment = {
            RUST_LOG = mkDefault "garage=${cfg.logLevel}";
          }
          // cfg.extraEnvironment;
          restartTriggers = [ configFile ] ++ lib.optional (cfg.environmentFile != null) cfg.environmentFile;
          serviceConfig =
            let
              paths = lib.flatten (
                [ cfg.settings.metadata_dir ]
                ++ lib.optional (lib.isList cfg.settings.data_dir) (map (item: item.path) cfg.settings.data_dir)
                ++ lib.optional (lib.isString cfg.settings.data_dir) [ cfg.settings.data_dir ]
              );
              isDefault = lib.hasPrefix "/var/lib/garage";
            in
            {
              DynamicUser = mkDefault true;
              EnvironmentFile = lib.optional (cfg.environmentFile != null) cfg.environmentFile;
              ExecStart = "${cfg.package}/bin/garage server";
              LimitNOFILE = 42000;
              NoNewPrivileges = true;
              ProtectHome = true;
              ReadWritePaths = lib.filter (x: !(isDefault x)) paths;
              StateDirectory = mkIf (lib.any isDefault paths) "garage";
            };
          wantedBy = [ "multi-user.target" ];
          wants = [
            "network.target"
            "network-online.target"
          ];
        };
      };
    };

  # --- the other NixOS options barkeep's module and the flake's test machines set --------------
  nixosOptions = {
    options = {
      assertions = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
      };
      warnings = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      # nixos/modules/misc/version.nix (the default is the release; NixOS warns when unset).
      system.stateVersion = mkOption {
        type = types.str;
        default = "26.05";
      };
      systemd.package = mkOption {
        type = types.package;
        default = fakeDrv "systemd-258.1" { version = "258.1"; };
      };
      systemd.services = mkOption {
        type = types.attrsOf serviceType;
        default = { };
      };
      systemd.targets = mkOption {
        type = types.attrsOf targetType;
        default = { };
      };
      systemd.timers = mkOption {
        type = types.attrsOf timerType;
        default = { };
      };
      systemd.tmpfiles.rules = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      environment.etc = mkOption {
        type = types.attrsOf (
          types.submodule {
            freeformType = types.attrsOf types.anything;
            options.text = mkOption {
              type = types.nullOr types.lines;
              default = null;
            };
          }
        );
        default = { };
      };
      environment.systemPackages = mkOption {
        type = types.listOf types.package;
        default = [ ];
      };
      security.polkit.enable = mkOption {
        type = types.bool;
        default = false;
      };
      security.polkit.extraConfig = mkOption {
        type = types.lines;
        default = "";
      };
      networking.firewall.allowedTCPPorts = mkOption {
        type = types.listOf types.port;
        default = [ ];
      };
    };
  };
in
{
  inherit
    fakeDrv
    pkgs2605
    pkgs2511
    postgresqlModule
    garageModule
    nixosOptions
    unitOption
    ;
  # The package set the module is evaluated with (nixos-26.05).
  pkgs = pkgs2605;

  barkeep = fakeDrv "barkeep-0.1.0" { version = "0.1.0"; };
  barman = fakeDrv "barman-3.3.0" {
    version = "3.3.0";
    pythonVersion = "3.10";
  };
  barman315 = fakeDrv "barman-3.15.0" { version = "3.15.0"; };
}
