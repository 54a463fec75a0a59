# Evaluates nix/package.nix with stand-ins for the builders (each returns its arguments), so that
# its evaluation-time logic runs here without nixpkgs: Cargo.lock and Cargo.toml are read, the
# wasm-bindgen version assertion is checked, and the source file set is listed.
{ lib }:
let
  root = ../..;
  args = x: x;
  pkg = import (root + "/nix/package.nix") {
    inherit lib;
    rustPlatform = {
      buildRustPackage = args;
      importCargoLock = args;
    };
    buildWasmBindgenCli = args;
    fetchCrate = args;
    cargo-leptos = "cargo-leptos";
    binaryen = "binaryen";
    # The version the pin is documented to have (docs/nix.md); a Nix machine checks the real one.
    rustc = {
      version = "1.95.0";
      llvmPackages.lld = "lld";
    };
    makeWrapper = "makeWrapper";
  };
in
{
  inherit (pkg) pname version;
  rustVersion = (builtins.fromTOML (builtins.readFile (root + "/Cargo.toml"))).workspace.package.rust-version;
  cli = {
    inherit (pkg.passthru.wasm-bindgen-cli) version;
    inherit (pkg.passthru.wasm-bindgen-cli.src) pname hash;
    src_version = pkg.passthru.wasm-bindgen-cli.src.version;
    lockFile = toString pkg.passthru.wasm-bindgen-cli.cargoDeps.lockFile;
  };
  cargoLock = toString pkg.cargoLock.lockFile;
  # Every path the source is made of, and whether it exists (lib.fileset.unions would fail on
  # a missing one outside maybeMissing).
  sources = map (p: {
    path = lib.removePrefix "${toString root}/" (toString p);
    exists = builtins.pathExists p;
  }) pkg.passthru.sourcePaths;
}
