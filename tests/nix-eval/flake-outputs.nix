# The flake's wiring, evaluated here without nixpkgs: flake.nix's `outputs` called with a stand-in
# for the nixpkgs input (nixpkgs' real `lib`, and fake packages and builders from ./stubs.nix
# that return their arguments). Yields the output names, the VM tests' Python scripts (for a
# syntax check) and the failed assertions of the VM test machine and the demo VM evaluated with
# the real module. The NixOS options those two configurations set besides services.barkeep
# (virtualisation.*, networking.hostName, systemd.sockets, ...) are accepted by a freeform
# top level here: only services.barkeep and the options in ./stubs.nix are typed.
{ lib }:
let
  root = ../..;
  system = "x86_64-linux";
  flake = import (root + "/flake.nix");
  stubs = import ./stubs.nix { inherit lib; };

  fakePkgs = stubs.pkgs // {
    callPackage =
      fn: _args:
      if baseNameOf (toString fn) == "barman.nix" then
        stubs.barman
      else
        stubs.fakeDrv "callPackage-${baseNameOf (toString fn)}" { };
    runCommand =
      name: _env: _script:
      stubs.fakeDrv name { };
    testers.runNixOSTest = args: args;
    mkShell = args: args;
    nixfmt = stubs.fakeDrv "nixfmt" { };
  };

  nixpkgs = {
    lib = lib // {
      nixosSystem = _args: {
        config.system.build.vm = stubs.fakeDrv "nixos-vm" { };
      };
    };
    legacyPackages.${system} = fakePkgs;
  };

  outputs = flake.outputs { inherit self nixpkgs; };
  self = outputs // {
    outPath = toString root;
  };

  evalNixos =
    modules:
    (lib.evalModules {
      modules = [
        stubs.nixosOptions
        {
          _module.args.pkgs = fakePkgs;
          _module.freeformType = lib.types.lazyAttrsOf lib.types.anything;
        }
      ]
      ++ modules;
    }).config;

  failedAssertions =
    config:
    map (a: a.message) (lib.filter (a: !a.assertion) config.assertions) ++ config.warnings;

  vmTests = lib.filterAttrs (n: _: lib.hasPrefix "vm-" n) outputs.checks.${system};
in
{
  inputs = builtins.attrNames flake.inputs;
  nixpkgsUrl = flake.inputs.nixpkgs.url;
  packages = builtins.attrNames outputs.packages.${system};
  checks = builtins.attrNames outputs.checks.${system};
  nixEvalCheck = outputs.checks.${system}.nix-eval.name;
  apps = lib.mapAttrs (_: a: { inherit (a) type program; }) outputs.apps.${system};
  nixosModules = lib.mapAttrs (_: builtins.isFunction) outputs.nixosModules;
  devShells = builtins.attrNames outputs.devShells.${system};
  formatter = outputs.formatter.${system}.name;

  testNames = lib.mapAttrs (_: t: t.name) vmTests;
  testScripts = lib.mapAttrs (_: t: t.testScript) vmTests;
  testMachines = lib.mapAttrs (
    _: t:
    let
      config = evalNixos [ t.nodes.machine ];
    in
    {
      failed = failedAssertions config;
      barkeepToml = config.environment.etc."barkeep/barkeep.toml".text;
      serverConf = config.environment.etc."barman.d/pg.conf".text;
    }
  ) vmTests;
  # The same modules as the flake's demo VM (apps.vm).
  demo =
    let
      config = evalNixos [
        outputs.nixosModules.default
        (root + "/nix/demo-vm.nix")
      ];
    in
    {
      failed = failedAssertions config;
      listen = config.systemd.services.barkeep.environment.LEPTOS_SITE_ADDR;
      forwardPorts = config.virtualisation.vmVariant.virtualisation.forwardPorts;
    };
}
