# The flake's wiring, evaluated here without nixpkgs: flake.nix's `outputs` called with stand-ins
# for its inputs (nixpkgs' real `lib`; the package sets of ./stubs.nix with the attribute names
# nixos-26.05 and nixos-25.11 really have, whose `callPackage` is nixpkgs' own
# lib.callPackageWith, so a file asking for an attribute the release lacks aborts as in nixpkgs).
# Yields the output names, every package and the dev shell forced, the VM tests' Python scripts
# and node names (for a syntax and name check) and every node of every VM test and the demo VM
# evaluated with the real module and the stand-ins of nixpkgs' postgresql and garage modules
# (the nodes that run barkeep in detail, the others for failed assertions). The NixOS options those configurations set
# besides services.barkeep and the options in ./stubs.nix (virtualisation.*, networking.hostName,
# systemd.sockets, ...) are accepted by a freeform top level here.
{ lib }:
let
  root = ../..;
  system = "x86_64-linux";
  flake = import (root + "/flake.nix");
  stubs = import ./stubs.nix { inherit lib; };

  fakePkgs = stubs.pkgs2605;

  inputStandIns = {
    nixpkgs = {
      lib = lib // {
        nixosSystem = _args: {
          config.system.build.vm = stubs.fakeDrv "nixos-vm" { };
        };
      };
      legacyPackages.${system} = fakePkgs;
    };
    # nixos-25.11, for Barman's Python 3.10 only.
    nixpkgs-python310 = {
      inherit lib;
      legacyPackages.${system} = stubs.pkgs2511;
    };
  };

  # Exactly the inputs flake.nix declares (an input without a stand-in is an error here).
  inputs = lib.mapAttrs (
    name: _:
    inputStandIns.${name} or (throw "tests/nix-eval/flake-outputs.nix: no stand-in for input ${name}")
  ) flake.inputs;

  outputs = flake.outputs (inputs // { inherit self; });
  self = outputs // {
    outPath = toString root;
  };

  evalNixos =
    modules:
    (lib.evalModules {
      modules = [
        stubs.postgresqlModule
        stubs.garageModule
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

  machine =
    config:
    let
      barman = config.services.barkeep.barman.package;
    in
    {
      failed = failedAssertions config;
      barkeepToml = config.environment.etc."barkeep/barkeep.toml".text;
      serverConf = config.environment.etc."barman.d/pg.conf".text;
      postgresql = config.services.postgresql.package.name;
      barman = {
        inherit (barman) name version;
        python = barman.pythonVersion or null;
      };
      barmanWithCloud = barman.withCloud or false;
      barkeepGroups = config.systemd.services.barkeep.serviceConfig.SupplementaryGroups or [ ];
      pgHba = config.services.postgresql.authentication;
      setupConditions = config.systemd.services.postgresql-setup.unitConfig.ConditionPathExists or null;
    };

  # Every node of every VM test, through the NixOS modules; the name of a node that runs barkeep
  # is its test's for a test's one node `machine`, "<test>/<node>" otherwise.
  nodeConfigs = lib.mapAttrs (_: t: lib.mapAttrs (_: node: evalNixos [ node ]) t.nodes) vmTests;
  nodeName = test: node: if node == "machine" then test else "${test}/${node}";
  nodesWhere =
    pred: f:
    lib.listToAttrs (
      lib.concatLists (
        lib.mapAttrsToList (
          test: nodes:
          lib.mapAttrsToList (node: config: lib.nameValuePair (nodeName test node) (f config)) (
            lib.filterAttrs (_: pred) nodes
          )
        ) nodeConfigs
      )
    );
  runsBarkeep = config: config.services.barkeep.enable or false;
in
{
  inputs = builtins.attrNames flake.inputs;
  inputUrls = lib.mapAttrs (_: i: i.url) flake.inputs;
  # Each package forced: a callPackage of a file asking for an attribute nixos-26.05 lacks
  # aborts here.
  packages = lib.mapAttrs (_: p: {
    inherit (p) name;
    version = p.version or null;
    python = p.pythonVersion or null;
  }) outputs.packages.${system};
  checks = builtins.attrNames outputs.checks.${system};
  nixEvalCheck = outputs.checks.${system}.nix-eval.name;
  apps = lib.mapAttrs (_: a: { inherit (a) type program; }) outputs.apps.${system};
  nixosModules = lib.mapAttrs (_: builtins.isFunction) outputs.nixosModules;
  devShells = builtins.attrNames outputs.devShells.${system};
  devShellPackages = map (p: p.name) outputs.devShells.${system}.default.packages;
  formatter = outputs.formatter.${system}.name;

  testNames = lib.mapAttrs (_: t: t.name) vmTests;
  testScripts = lib.mapAttrs (_: t: t.testScript) vmTests;
  # The test driver's globals: one per node (and `machine` when there is one node only).
  testNodes = lib.mapAttrs (_: t: builtins.attrNames t.nodes) vmTests;
  testMachines = nodesWhere runsBarkeep machine;
  # The other nodes (vm-offsite's Garage).
  otherNodes = nodesWhere (config: !runsBarkeep config) (config: {
    failed = failedAssertions config;
    garage = {
      enable = config.services.garage.enable;
      package = config.services.garage.package.name;
      s3Bind = config.services.garage.settings.s3_api.api_bind_addr or null;
      execStart = config.systemd.services.garage.serviceConfig.ExecStart;
    };
    firewall = config.networking.firewall.allowedTCPPorts;
  });
  # The same modules as the flake's demo VM (apps.vm).
  demo =
    let
      config = evalNixos [
        outputs.nixosModules.default
        (root + "/nix/demo-vm.nix")
      ];
    in
    machine config
    // {
      listen = config.systemd.services.barkeep.environment.LEPTOS_SITE_ADDR;
      forwardPorts = config.virtualisation.vmVariant.virtualisation.forwardPorts;
    };
}
