{
  description = "barkeep: point-in-time recovery appliance for PostgreSQL 14 + Barman 3.3.0";

  # Two inputs (see README.md, "Two nixpkgs"):
  # - nixpkgs, nixos-26.05: everything (postgresql_14, rustc with the wasm32 std, lld, binaryen,
  #   cargo-leptos, buildWasmBindgenCli, the NixOS modules, testers.runNixOSTest);
  # - nixpkgs-python310, nixos-25.11: ONLY Barman's interpreter and its Python packages.
  #   nixos-26.05 has no python310 (dropped before the branch-off, NixOS/nixpkgs#490538), and
  #   Barman 3.3.0 imports distutils, which Python 3.12 removed.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";
  inputs.nixpkgs-python310.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs =
    {
      self,
      nixpkgs,
      nixpkgs-python310,
    }:
    let
      system = "x86_64-linux";
      pkgs = nixpkgs.legacyPackages.${system};
      inherit (nixpkgs) lib;

      # Barman 3.3.0 on nixos-25.11's Python 3.10, everything else of it (rsync, lib) from
      # `pkgs` (nixos-26.05 for this flake's outputs, the host's nixpkgs in the module); `args`
      # are barman.nix's own (withCloud: boto3 for the off-site copy).
      barmanFor =
        pkgs: args:
        pkgs.callPackage ./nixos-module/barman.nix (
          {
            inherit (nixpkgs-python310.legacyPackages.${pkgs.stdenv.hostPlatform.system}) python310;
          }
          // args
        );

      vmTest = file: import file { inherit pkgs self; };

      demo = lib.nixosSystem {
        inherit system;
        modules = [
          self.nixosModules.default
          ./nix/demo-vm.nix
        ];
      };
    in
    {
      packages.${system} = {
        default = self.packages.${system}.barkeep;
        barkeep = pkgs.callPackage ./nix/package.nix { };
        barman = barmanFor pkgs { };
        inherit (self.packages.${system}.barkeep.passthru) wasm-bindgen-cli;
      };

      # services.barkeep, with the package defaulting to this flake's build and Barman to 3.3.0
      # on Python 3.10 from nixos-25.11 (for any system), with boto3 for its cloud tools when
      # services.barkeep.offsite is enabled.
      nixosModules.default =
        {
          config,
          lib,
          pkgs,
          ...
        }:
        {
          imports = [ ./nixos-module ];
          services.barkeep.package = lib.mkDefault (pkgs.callPackage ./nix/package.nix { });
          services.barkeep.barman.package = lib.mkDefault (
            barmanFor pkgs { withCloud = config.services.barkeep.offsite.enable; }
          );
        };
      nixosModules.barkeep = self.nixosModules.default;

      checks.${system} = {
        vm-deploy = vmTest ./tests/vm-deploy.nix;
        vm-pitr = vmTest ./tests/vm-pitr.nix;
        vm-crash = vmTest ./tests/vm-crash.nix;
        # Two nodes: barkeep with services.barkeep.offsite, and nixpkgs' services.garage.
        vm-offsite = vmTest ./tests/vm-offsite.nix;
        # The offline evaluation tests of scripts/nix-check, against this nixpkgs' lib.
        nix-eval =
          let
            results = map (f: import f { inherit lib; }) [
              ./tests/nix-eval/eval.nix
              ./tests/nix-eval/barman-python.nix
            ];
            failures = lib.concatMap (r: r.failures) results;
            sum = attr: toString (lib.foldl' (n: r: n + r.${attr}) 0 results);
          in
          if failures == [ ] then
            pkgs.runCommand "barkeep-nix-eval" { } ''
              echo "${sum "passed"} of ${sum "total"} checks passed" > $out
            ''
          else
            throw "tests/nix-eval failed:\n${lib.concatStringsSep "\n" failures}";
      };

      # nix run .#vm: a NixOS VM with barkeep and sample data; the UI on http://localhost:8080.
      apps.${system}.vm = {
        type = "app";
        program = "${demo.config.system.build.vm}/bin/run-barkeep-demo-vm";
        meta.description = "Demo VM: PostgreSQL 14 + Barman 3.3.0 + barkeep, UI on localhost:8080";
      };

      devShells.${system}.default = pkgs.mkShell {
        inputsFrom = [ self.packages.${system}.barkeep ];
        packages = [
          self.packages.${system}.barman
          pkgs.postgresql_14
          pkgs.rsync
          pkgs.nixfmt
        ];
        env.RUSTC_BOOTSTRAP = 1;
      };

      formatter.${system} = pkgs.nixfmt;
    };
}
