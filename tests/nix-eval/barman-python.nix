# Barman's interpreter against the real package sets (issue 9, reason 1): nixos-module/default.nix
# on its own, without the Barman package barkeep's flake gives it.
#  - on nixos-26.05 (no python310) the default must fail with the module's own message, never
#    reach nixpkgs' callPackage (which aborts, uncatchably) or pick another Python;
#  - on a nixpkgs that has python310 (nixos-25.11) it builds barman.nix: 3.3.0 on Python 3.10.
# A module that hands barman.nix to nixos-26.05's callPackage aborts this evaluation with
# nixpkgs' "Function called without required argument "python310"".
# And barman.nix itself for the off-site copy (withCloud): boto3 propagated to the barman-cloud-*
# tools, and an interpreter (passthru.pythonEnv) in which barman and boto3 import.
{ lib }:
let
  root = ../..;
  stubs = import ./stubs.nix { inherit lib; };

  barmanDefault = barmanDefaultWith { };
  barmanDefaultWith =
    extra: pkgs:
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
        extra
      ];
    }).config.services.barkeep.barman.package;

  barmanNix = args: stubs.pkgs2511.callPackage (root + "/nixos-module/barman.nix") args;
  plain = barmanNix { };
  cloud = barmanNix { withCloud = true; };
  pnames = map (d: d.pname or d.name);

  on2605 = builtins.tryEval (builtins.deepSeq (barmanDefault stubs.pkgs2605).name true);
  on2511 = barmanDefault stubs.pkgs2511;
  # With off-site copies the default is built with the cloud tools (boto3).
  on2511Offsite = barmanDefaultWith { services.barkeep.offsite.enable = true; } stubs.pkgs2511;

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
    {
      name = "nixpkgs-25.11/barman.package with services.barkeep.offsite: built withCloud, without it not";
      ok =
        on2511Offsite.withCloud
        && lib.elem "boto3" (pnames on2511Offsite.propagatedBuildInputs)
        && !on2511.withCloud;
      detail = "offsite: withCloud = ${builtins.toJSON on2511Offsite.withCloud}, without: ${builtins.toJSON on2511.withCloud}";
    }
    {
      name = "barman.nix: without withCloud no boto3 (the default closure stays small)";
      ok = !(lib.elem "boto3" (pnames plain.propagatedBuildInputs)) && !plain.withCloud;
      detail = "propagated ${builtins.toJSON (pnames plain.propagatedBuildInputs)}";
    }
    {
      name = "barman.nix withCloud: boto3 propagated (the barman-cloud-* wrappers' sys.path), same name";
      ok =
        lib.elem "boto3" (pnames cloud.propagatedBuildInputs)
        && cloud.withCloud
        && cloud.name == "barman-3.3.0"
        && lib.elem "barman.clients.cloud_walarchive" cloud.pythonImportsCheck;
      detail = "got ${cloud.name}, propagated ${builtins.toJSON (pnames cloud.propagatedBuildInputs)}";
    }
    {
      name = "barman.nix withCloud: boto3's checksum defaults of 1.35 (set-default) in the wrappers";
      ok =
        let
          a = cloud.makeWrapperArgs;
          at = builtins.elemAt a;
          hasDefault =
            name:
            lib.any (
              i: at i == "--set-default" && at (i + 1) == name && at (i + 2) == "when_required"
            ) (lib.range 0 (builtins.length a - 3));
        in
        hasDefault "AWS_REQUEST_CHECKSUM_CALCULATION" && hasDefault "AWS_RESPONSE_CHECKSUM_VALIDATION";
      detail = "makeWrapperArgs ${builtins.toJSON cloud.makeWrapperArgs}";
    }
    {
      name = "barman.nix: pythonEnv is Python 3.10 with barman as a module (not dropped by withPackages)";
      ok = lib.all (b: b.pythonEnv.pythonVersion == "3.10" && lib.elem "barman" (pnames b.pythonEnv.modules)) [
        plain
        cloud
      ];
      detail = "modules ${builtins.toJSON (pnames cloud.pythonEnv.modules)}";
    }
  ];
  failures = map (c: "${c.name}: ${c.detail}") (lib.filter (c: !c.ok) checks);
in
{
  inherit failures;
  passed = builtins.length checks - builtins.length failures;
  total = builtins.length checks;
}
