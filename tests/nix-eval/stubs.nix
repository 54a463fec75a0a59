# What lib.evalModules needs besides nixpkgs' `lib` to evaluate nixos-module/default.nix here,
# where neither nixpkgs (it needs Nix >= 2.18) nor a Nix cache is available:
#  - `pkgs`: fake derivations (attribute sets with an outPath; nothing is built) for the few
#    packages the module refers to, and `formats.ini` with the type nixpkgs' formats.ini has;
#  - the NixOS options the module SETS but does not declare (services.postgresql.*,
#    systemd.*, environment.*, security.polkit.*, networking.firewall.*, assertions,
#    warnings), declared with the types NixOS gives them where the module's values depend on
#    merging (lists, lines, submodules) and as `anything` elsewhere. services.postgresql's
#    dataDir default and settings.port default mirror nixos/modules/services/databases/postgresql.nix.
# Nothing else is stubbed: options, defaults, rendering and assertions are the module's own.
{ lib }:
let
  inherit (lib) mkOption types;

  fakeDrv =
    name: attrs:
    {
      type = "derivation";
      inherit name;
      outPath = "${builtins.storeDir}/${builtins.substring 0 32 (builtins.hashString "sha256" name)}-${name}";
    }
    // attrs;

  iniAtom = types.nullOr (
    types.oneOf [
      types.bool
      types.int
      types.float
      types.str
    ]
  );
in
rec {
  inherit fakeDrv;

  pkgs = {
    postgresql_14 = fakeDrv "postgresql-14.23" {
      pname = "postgresql";
      version = "14.23";
      psqlSchema = "14";
    };
    postgresql_16 = fakeDrv "postgresql-16.10" {
      pname = "postgresql";
      version = "16.10";
      psqlSchema = "16";
    };
    rsync = fakeDrv "rsync-3.4.1" { version = "3.4.1"; };
    formats.ini =
      { ... }:
      {
        type = types.attrsOf (types.attrsOf iniAtom);
        generate = name: _value: fakeDrv name { };
      };
  };

  barkeep = fakeDrv "barkeep-0.1.0" { version = "0.1.0"; };
  barman = fakeDrv "barman-3.3.0" { version = "3.3.0"; };
  barman315 = fakeDrv "barman-3.15.0" { version = "3.15.0"; };

  unitType = types.submodule {
    freeformType = types.attrsOf types.anything;
    options = {
      serviceConfig = mkOption {
        type = types.submodule {
          freeformType = types.attrsOf types.anything;
          options.ReadWritePaths = mkOption {
            type = types.listOf types.str;
            default = [ ];
          };
        };
        default = { };
      };
      unitConfig = mkOption {
        type = types.attrsOf types.anything;
        default = { };
      };
      after = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      wants = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      requires = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      wantedBy = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      path = mkOption {
        type = types.listOf types.anything;
        default = [ ];
      };
      environment = mkOption {
        type = types.attrsOf types.str;
        default = { };
      };
      script = mkOption {
        type = types.lines;
        default = "";
      };
      preStart = mkOption {
        type = types.lines;
        default = "";
      };
    };
  };

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
      services.postgresql = {
        enable = mkOption {
          type = types.bool;
          default = false;
        };
        package = mkOption { type = types.package; };
        dataDir = mkOption {
          type = types.str;
          default = "/var/lib/postgresql/${pkgs.postgresql_14.psqlSchema}";
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
            options.port = mkOption {
              type = types.port;
              default = 5432;
            };
          };
          default = { };
        };
        ensureDatabases = mkOption {
          type = types.listOf types.str;
          default = [ ];
        };
      };
      systemd.package = mkOption {
        type = types.package;
        default = fakeDrv "systemd-258.1" { version = "258.1"; };
      };
      systemd.services = mkOption {
        type = types.attrsOf unitType;
        default = { };
      };
      systemd.timers = mkOption {
        type = types.attrsOf (types.attrsOf types.anything);
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
}
