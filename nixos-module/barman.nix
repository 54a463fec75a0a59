# Barman 3.3.0 on Python 3.10, the version barkeep is built and tested against (nixpkgs
# packages Barman 3.15+). From the PyPI sdist, which carries no tests.
#
# `python310` is not in nixos-26.05 (dropped before the branch-off): the flake passes the one of
# its nixos-25.11 input (`nixpkgs-python310`), used for Barman's interpreter and its Python
# packages only; called with nixos-26.05's callPackage and no python310 it aborts at evaluation.
# Barman 3.3.0 imports distutils (removed in Python 3.12): 3.10 or 3.11 only.
#
# withCloud: Barman's `cloud` extra (boto3, from the same python310 package set), for the
# barman-cloud-* tools that barkeep's off-site copy runs against S3-compatible storage
# (services.barkeep.offsite, docs/offsite.md). Off by default: boto3 and botocore add some
# 100 MB to the closure of a host that does not copy off-site.
{
  lib,
  python310,
  rsync,
  withCloud ? false,
}:

let
  barman = python310.pkgs.buildPythonApplication rec {
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

    # Propagated: the wrappers of bin/barman and bin/barman-cloud-* put them on sys.path.
    dependencies =
      with python310.pkgs;
      [
        argcomplete
        psycopg2
        python-dateutil
      ]
      ++ lib.optionals withCloud [ boto3 ];

    makeWrapperArgs = [
      # local-rsync backups and every recover run rsync.
      "--prefix"
      "PATH"
      ":"
      (lib.makeBinPath [ rsync ])
    ]
    ++ lib.optionals withCloud [
      # boto3 1.36 and later add a CRC32 checksum to every upload, sent as an aws-chunked
      # trailer, and validate response checksums; not every S3-compatible store accepts that.
      # barkeep's off-site copy was written and tested with boto3 1.35.99 (scripts/sandbox),
      # whose behaviour this is ("when_required": only where the S3 API requires a checksum).
      # A default: the environment of whoever runs the tools still decides.
      "--set-default"
      "AWS_REQUEST_CHECKSUM_CALCULATION"
      "when_required"
      "--set-default"
      "AWS_RESPONSE_CHECKSUM_VALIDATION"
      "when_required"
    ];

    # The sdist has no tests; check that the package imports and the CLI starts.
    doCheck = false;
    pythonImportsCheck = [
      "barman"
      "barman.cli"
    ]
    ++ lib.optionals withCloud [
      "boto3"
      "barman.cloud_providers.aws_s3"
      "barman.clients.cloud_walarchive"
      "barman.clients.cloud_backup"
      "barman.clients.cloud_backup_list"
    ];
    doInstallCheck = true;
    installCheckPhase = ''
      runHook preInstallCheck
      $out/bin/barman --version 2>&1 | grep -F ${version}
    ''
    + lib.optionalString withCloud ''
      for tool in barman-cloud-wal-archive barman-cloud-backup barman-cloud-backup-list; do
        $out/bin/$tool --version 2>&1 | grep -F ${version}
      done
    ''
    + ''
      runHook postInstallCheck
    '';

    passthru = {
      inherit withCloud;
      # Python 3.10 that imports barman and its dependencies (boto3 with withCloud): barkeep
      # lists an off-site bucket with it (`offsite.python` in barkeep.toml). An application
      # provides no module to withPackages (it would be dropped silently): toPythonModule makes
      # it one, without a rebuild (it changes passthru only).
      pythonEnv = python310.withPackages (ps: [ (ps.toPythonModule barman) ]);
    };

    meta = {
      description = "Backup and Recovery Manager for PostgreSQL (3.3.0, for barkeep)";
      homepage = "https://www.pgbarman.org/";
      changelog = "https://github.com/EnterpriseDB/barman/blob/release/${version}/NEWS";
      license = lib.licenses.gpl3Plus;
      platforms = lib.platforms.linux;
      mainProgram = "barman";
    };
  };
in
barman
