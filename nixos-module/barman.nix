# Barman 3.3.0 on Python 3.10, the version barkeep is built and tested against (nixpkgs
# packages Barman 3.15+). From the PyPI sdist, which carries no tests.
#
# `python310` is not in nixos-26.05 (dropped before the branch-off): the flake passes the one of
# its nixos-25.11 input (`nixpkgs-python310`), used for Barman's interpreter and its Python
# packages only; called with nixos-26.05's callPackage and no python310 it aborts at evaluation.
# Barman 3.3.0 imports distutils (removed in Python 3.12): 3.10 or 3.11 only.
{
  lib,
  python310,
  rsync,
}:

python310.pkgs.buildPythonApplication rec {
  pname = "barman";
  version = "3.3.0";
  pyproject = true;

  src = python310.pkgs.fetchPypi {
    inherit pname version;
    hash = "sha256-qC94vAR6W6TlXwWJbXUQq2VsknV0jtT9vXWRPe3A3os=";
  };

  patches = [
    # `barman cron` spawns archive-wal/receive-wal as [sys.executable, sys.argv[0], ...]. Under
    # Nix sys.argv[0] is the shell wrapper bin/barman, which python cannot run: execute the
    # wrapper itself (nixpkgs carried the same change for its barman 3.x).
    ./barman-3.3.0-unwrap-subprocess.patch
  ];

  build-system = [ python310.pkgs.setuptools ];

  dependencies = with python310.pkgs; [
    argcomplete
    psycopg2
    python-dateutil
  ];

  # local-rsync backups and every recover run rsync.
  makeWrapperArgs = [
    "--prefix"
    "PATH"
    ":"
    (lib.makeBinPath [ rsync ])
  ];

  # The sdist has no tests; check that the package imports and the CLI starts.
  doCheck = false;
  pythonImportsCheck = [
    "barman"
    "barman.cli"
  ];
  doInstallCheck = true;
  installCheckPhase = ''
    runHook preInstallCheck
    $out/bin/barman --version 2>&1 | grep -F ${version}
    runHook postInstallCheck
  '';

  meta = {
    description = "Backup and Recovery Manager for PostgreSQL (3.3.0, for barkeep)";
    homepage = "https://www.pgbarman.org/";
    changelog = "https://github.com/EnterpriseDB/barman/blob/release/${version}/NEWS";
    license = lib.licenses.gpl3Plus;
    platforms = lib.platforms.linux;
    mainProgram = "barman";
  };
}
