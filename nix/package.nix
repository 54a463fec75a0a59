# barkeep: the axum server + CLI with the hydrated Leptos front end, built with cargo-leptos the
# way nixpkgs builds idmail (pkgs/by-name/id/idmail/package.nix). No vendor hash: every crate's
# checksum comes from Cargo.lock.
{
  lib,
  rustPlatform,
  buildWasmBindgenCli,
  fetchCrate,
  cargo-leptos,
  binaryen,
  rustc,
  makeWrapper,
}:
let
  workspace = builtins.fromTOML (builtins.readFile ../Cargo.toml);
  lock = builtins.fromTOML (builtins.readFile ../Cargo.lock);
  leptos = builtins.head workspace.workspace.metadata.leptos;

  # cargo-leptos runs whatever wasm-bindgen is on PATH and never compares it with the crate: the
  # CLI must be EXACTLY the wasm-bindgen version in Cargo.lock (pinned `=` in Cargo.toml).
  wasmBindgenVersion = "0.2.130";
  lockedWasmBindgen = map (p: p.version) (builtins.filter (p: p.name == "wasm-bindgen") lock.package);

  # Built here rather than taken from nixpkgs' wasm-bindgen-cli_0_2_*, which may not carry this
  # version at the pinned revision. src hash: `nix hash path` of the unpacked crate (checksum
  # verified against the crates.io index); dependencies from the crate's own Cargo.lock.
  wasm-bindgen-cli = buildWasmBindgenCli {
    version = wasmBindgenVersion;
    src = fetchCrate {
      pname = "wasm-bindgen-cli";
      version = wasmBindgenVersion;
      hash = "sha256-9Og1O/6/VC3sc5hBjoIWBErmLW2UHGMsTQO+6+m/dng=";
    };
    cargoDeps = rustPlatform.importCargoLock {
      lockFile = ./wasm-bindgen-cli-0.2.130.Cargo.lock;
    };
  };

  # Only what the build reads: the workspace members (from Cargo.toml), the lock file, and
  # cargo-leptos' style file and assets directory (from its workspace metadata).
  sourcePaths = [
    ../Cargo.toml
    ../Cargo.lock
    (../. + "/${leptos.style-file}")
  ]
  ++ map (member: ../. + "/${member}") workspace.workspace.members;
  optionalSourcePaths = [
    (../. + "/${leptos.assets-dir}")
    ../.cargo/config.toml
  ];
  fileset = lib.fileset.unions (sourcePaths ++ map lib.fileset.maybeMissing optionalSourcePaths);
in
# The pinned nixpkgs' rustc must be at least the workspace's rust-version (Cargo.toml): on a
# pin whose rustc is older the build would fail late, inside cargo; fail at evaluation instead.
assert lib.assertMsg (lib.versionAtLeast rustc.version workspace.workspace.package.rust-version) ''
  nix/package.nix: the pinned nixpkgs has rustc ${rustc.version}, but Cargo.toml's rust-version is
  ${workspace.workspace.package.rust-version}. Update the nixpkgs input or lower rust-version (docs/nix.md).
'';
assert lib.assertMsg (lockedWasmBindgen == [ wasmBindgenVersion ]) ''
  nix/package.nix builds wasm-bindgen-cli ${wasmBindgenVersion}, but Cargo.lock has wasm-bindgen
  ${builtins.toJSON lockedWasmBindgen}: cargo-leptos needs both to be equal. Update
  wasmBindgenVersion, the fetchCrate hash and nix/wasm-bindgen-cli-<version>.Cargo.lock together.
'';
rustPlatform.buildRustPackage {
  pname = "barkeep";
  inherit (workspace.workspace.package) version;
  src = lib.fileset.toSource {
    root = ../.;
    inherit fileset;
  };

  cargoLock.lockFile = ../Cargo.lock;

  env.RUSTC_BOOTSTRAP = 1;

  nativeBuildInputs = [
    wasm-bindgen-cli
    binaryen
    cargo-leptos
    rustc.llvmPackages.lld
    makeWrapper
  ];

  buildPhase = ''
    runHook preBuild
    cargo leptos build --release
    runHook postBuild
  '';

  # The engine's unit tests; the rest needs the real stack (VM tests, scripts/sandbox).
  cargoTestFlags = [
    "--package"
    "barkeep-engine"
    "--lib"
  ];

  installPhase = ''
    runHook preInstall
    install -Dm755 target/release/barkeep $out/bin/barkeep
    mkdir -p $out/share/barkeep
    cp -r target/site $out/share/barkeep/site
    wrapProgram $out/bin/barkeep \
      --set-default LEPTOS_SITE_ROOT $out/share/barkeep/site \
      --set-default LEPTOS_OUTPUT_NAME ${leptos.output-name} \
      --set-default LEPTOS_SITE_PKG_DIR ${leptos.site-pkg-dir} \
      --set-default LEPTOS_ENV PROD
    runHook postInstall
  '';

  passthru = {
    inherit wasm-bindgen-cli;
    # for scripts/nix-check (lib.fileset itself needs Nix >= 2.14)
    inherit sourcePaths optionalSourcePaths;
  };

  meta = {
    description = "Point-in-time recovery appliance for PostgreSQL 14 with Barman 3.3.0";
    license = lib.licenses.mit;
    platforms = lib.platforms.linux;
    mainProgram = "barkeep";
  };
}
