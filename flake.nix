{
  description = "barkeep: point-in-time recovery appliance for PostgreSQL 14 + Barman 3.3.0";

  # The only input. nixos-26.05: postgresql_14, python310, rustc with the wasm32 std, lld,
  # binaryen, cargo-leptos, testers.runNixOSTest.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  outputs =
    { self, nixpkgs }:
    let
      system = "x86_64-linux";
      pkgs = nixpkgs.legacyPackages.${system};
      inherit (nixpkgs) lib;

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
        barman = pkgs.callPackage ./nixos-module/barman.nix { };
        inherit (self.packages.${system}.barkeep.passthru) wasm-bindgen-cli;
      };

      # services.barkeep, with the package defaulting to this flake's build (for any system).
      nixosModules.default =
        { lib, pkgs, ... }:
        {
          imports = [ ./nixos-module ];
          services.barkeep.package = lib.mkDefault (pkgs.callPackage ./nix/package.nix { });
        };
      nixosModules.barkeep = self.nixosModules.default;

      checks.${system} = {
        vm-deploy = vmTest ./tests/vm-deploy.nix;
        vm-pitr = vmTest ./tests/vm-pitr.nix;
        vm-crash = vmTest ./tests/vm-crash.nix;
        # The offline evaluation test of scripts/nix-check, against this nixpkgs' lib.
        nix-eval =
          let
            result = import ./tests/nix-eval/eval.nix { inherit lib; };
          in
          if result.failures == [ ] then
            pkgs.runCommand "barkeep-nix-eval" { } ''
              echo "${toString result.passed} of ${toString result.total} checks passed" > $out
            ''
          else
            throw "tests/nix-eval failed:\n${lib.concatStringsSep "\n" result.failures}";
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
