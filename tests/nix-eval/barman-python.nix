# Barman's interpreter against the real package sets (issue 9, reason 1): nixos-module/default.nix
# on its own, without the Barman package barkeep's flake gives it.
#  - on nixos-26.05 (no python310) the default must fail with the module's own message, never
#    reach nixpkgs' callPackage (which aborts, uncatchably) or pick another Python;
#  - on a nixpkgs that has python310 (nixos-25.11) it builds barman.nix: 3.3.0 on Python 3.10.
# A module that hands barman.nix to nixos-26.05's callPackage aborts this evaluation with
# nixpkgs' "Function called without required argument "python310"".
{ lib }:
let
  root = ../..;
  stubs = import ./stubs.nix { inherit lib; };

  barmanDefault =
    pkgs:
    (lib.evalModules {
      modules = [
        stubs.postgresqlModule
        stubs.nixosOptions
        (root + "/nixos-module/default.nix")
        { _module.args.pkgs = pkgs; }
        {
          services.barkeep = {
            enable = true;
            package = stubs.barkeep;
          };
        }
      ];
    }).config.services.barkeep.barman.package;

  on2605 = builtins.tryEval (builtins.deepSeq (barmanDefault stubs.pkgs2605).name true);
  on2511 = barmanDefault stubs.pkgs2511;

  checks = [
    {
      name = "nixpkgs-26.05/barman.package without the flake: the module's own error";
      ok = !on2605.success;
      detail = "evaluated to a Barman on nixos-26.05, which has no python310";
    }
    {
      name = "nixpkgs-25.11/barman.package: barman.nix gives Barman 3.3.0 on Python 3.10";
      ok = on2511.version == "3.3.0" && on2511.pythonVersion == "3.10";
      detail = "got ${on2511.name} on Python ${on2511.pythonVersion or "?"}";
    }
  ];
  failures = map (c: "${c.name}: ${c.detail}") (lib.filter (c: !c.ok) checks);
in
{
  inherit failures;
  passed = builtins.length checks - builtins.length failures;
  total = builtins.length checks;
}
