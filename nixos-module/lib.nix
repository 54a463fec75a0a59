# Pure functions behind services.barkeep: options in, file contents and settings out.
# Nothing here touches pkgs or the store, so tests/nix-eval can evaluate all of it with
# nixpkgs' `lib` alone (no Nix cache, no builds) and compare it with the documented setup.
{ lib }:
let
  inherit (lib)
    concatMapStringsSep
    concatStringsSep
    filterAttrs
    hasPrefix
    isAttrs
    isBool
    isInt
    isList
    isString
    mapAttrs
    partition
    ;
in
rec {
  # The socket directory of the NixOS postgresql unit. barkeep and barman both connect through
  # it: peer authentication as the postgres OS user, no password and no `trust` rule on TCP.
  socketDir = "/run/postgresql";

  # Section names and server names become file names (/etc/barman.d/<server>.conf), directory
  # names (<barman_home>/<server>) and argv elements: letters, digits, - and _ only (the same
  # rule as engine/src/validate.rs is_plain_name).
  isPlainName = s: isString s && builtins.match "[A-Za-z0-9_-]+" s != null;

  isAbsolutePath = s: isString s && hasPrefix "/" s;

  isStorePath = s: isString s && hasPrefix "${builtins.storeDir}/" s;

  # An off-site bucket URL as the engine accepts it (engine/src/validate.rs is_bucket_url):
  # s3://<bucket>[/<prefix>], the bucket 3 to 63 of a-z 0-9 . - (not starting or ending with . or
  # -), the prefix parts letters, digits, . - _ (no empty part, no . or ..), at most 512 long.
  isBucketUrl =
    s:
    let
      m = builtins.match "s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])((/[A-Za-z0-9._-]+)*)" s;
      prefix = builtins.elemAt m 1;
      parts = builtins.filter (p: p != "") (lib.splitString "/" prefix);
    in
    isString s
    && m != null
    && builtins.stringLength prefix <= 513
    && lib.all (p: p != "." && p != "..") parts;

  # IPv4 127.0.0.0/8 or IPv6 ::1.
  isLoopback = addr: addr == "::1" || builtins.match "127\\.[0-9]+\\.[0-9]+\\.[0-9]+" addr != null;

  # An IP literal as Rust's SocketAddr accepts it (no host names).
  isIpLiteral =
    addr:
    builtins.match "[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+" addr != null
    || builtins.match "[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*" addr != null;

  # The deepest directory containing both paths ("/" if they share nothing).
  commonAncestor =
    a: b:
    let
      parts = p: builtins.filter (x: x != "") (lib.splitString "/" p);
      go =
        xs: ys:
        if xs != [ ] && ys != [ ] && builtins.head xs == builtins.head ys then
          [ (builtins.head xs) ] ++ go (builtins.tail xs) (builtins.tail ys)
        else
          [ ];
    in
    "/" + concatStringsSep "/" (go (parts a) (parts b));

  # "127.0.0.1:8080", "[::1]:8080".
  socketAddr =
    addr: port:
    if lib.hasInfix ":" addr then "[${addr}]:${toString port}" else "${addr}:${toString port}";

  # The documented archive_command: copy each segment into Barman's incoming directory, never
  # overwrite one that is already there (PostgreSQL then retries and the operator sees it).
  archiveCommand =
    { barmanHome, server }:
    let
      incoming = "${barmanHome}/${server}/incoming";
    in
    "test ! -f ${incoming}/%f && cp %p ${incoming}/%f";

  incomingDir = { barmanHome, server }: "${barmanHome}/${server}/incoming";

  # What services.postgresql.settings must hold for continuous archiving.
  postgresqlSettings =
    {
      barmanHome,
      server,
      archiveTimeout,
    }:
    {
      wal_level = "replica";
      archive_mode = "on";
      archive_command = archiveCommand { inherit barmanHome server; };
      archive_timeout = archiveTimeout;
    };

  # libpq connection string for Barman. The port is only written when it is not the default,
  # so the default configuration is exactly the documented one apart from the host (see above).
  conninfo =
    {
      database,
      port,
      host ? socketDir,
      user ? "postgres",
    }:
    "host=${host} user=${user} dbname=${database}"
    + lib.optionalString (port != 5432) " port=${toString port}";

  # [barman] section of /etc/barman.conf: the documented values.
  barmanGlobalDefaults = {
    barman_user = "postgres";
    configuration_files_directory = "/etc/barman.d";
    barman_home = "/var/lib/barman";
    log_file = "/var/log/barman.log";
    log_level = "INFO";
    compression = "gzip";
  };

  # INI exactly as `(pkgs.formats.ini { }).generate` writes it (lib.generators.toINI with its
  # defaults: `key=value`, sections and keys sorted); null means "leave the key out".
  renderIni =
    sections:
    lib.generators.toINI { } (mapAttrs (_: filterAttrs (_: v: v != null)) sections);

  # barkeep's configuration file (engine/src/config.rs), as an attribute set.
  barkeepConfig =
    {
      listen,
      stateDir,
      usersFile ? null,
      metricsTokenFile ? null,
      dataDir,
      pgBinDir,
      port,
      database,
      barmanHome,
      server,
      barmanBin,
      barmanConfig ? "/etc/barman.conf",
      barmanTimeout ? 3600,
      systemctl,
      unit ? "postgresql.service",
      verifyUser ? "barkeep_verify",
      # The [offsite] section (engine/src/config.rs OffsiteConfig), or null: off.
      offsite ? null,
    }:
    {
      inherit listen;
      state_dir = stateDir;
    }
    // lib.optionalAttrs (usersFile != null) { users_file = usersFile; }
    // lib.optionalAttrs (metricsTokenFile != null) { metrics_token_file = metricsTokenFile; }
    // {
      postgres = {
        data_dir = dataDir;
        bin_dir = pgBinDir;
        host = socketDir;
        inherit port database;
        user = "postgres";
        archive_command = archiveCommand { inherit barmanHome server; };
        verify_user = verifyUser;
      };
      barman = {
        bin = barmanBin;
        config = barmanConfig;
        inherit server;
        home = barmanHome;
        timeout_secs = barmanTimeout;
      };
      service = {
        kind = "systemd";
        inherit unit systemctl;
      };
    }
    // lib.optionalAttrs (offsite != null) { inherit offsite; };

  # The [offsite] section: where the copies go and the Barman whose cloud tools make them.
  offsiteConfig =
    {
      endpointUrl,
      bucketUrl,
      region,
      credentialsFile,
      interval,
      cloudBinDir,
      python,
    }:
    {
      endpoint_url = endpointUrl;
      bucket_url = bucketUrl;
      inherit region;
      credentials_file = credentialsFile;
      interval_secs = interval;
      cloud_bin_dir = cloudBinDir;
      inherit python;
    };

  # A TOML writer for the flat schema above (top-level keys, then one level of tables), so the
  # file can be rendered and compared at evaluation time (pkgs.formats.toml needs a build).
  # Strings are written as TOML basic strings; JSON's escapes (\" \\ \n \t \uXXXX) are valid there.
  toTomlValue =
    v:
    if isString v then
      builtins.toJSON v
    else if isBool v then
      (if v then "true" else "false")
    else if isInt v then
      toString v
    else if isList v then
      "[" + concatMapStringsSep ", " toTomlValue v + "]"
    else
      throw "barkeep: cannot write ${builtins.typeOf v} as a TOML value";

  renderToml =
    attrs:
    let
      split = partition (n: isAttrs attrs.${n}) (builtins.attrNames attrs);
      keyValues = set: names: concatMapStringsSep "" (n: "${n} = ${toTomlValue set.${n}}\n") names;
      table =
        name:
        let
          t = attrs.${name};
        in
        "\n[${name}]\n" + keyValues t (builtins.attrNames t);
    in
    keyValues attrs split.wrong + concatStringsSep "" (map table split.right);

  # JavaScript for security.polkit.extraConfig: `user` may start, stop and restart `unit`, and
  # nothing else. (Masking is deliberately not granted: polkit cannot scope
  # org.freedesktop.systemd1.manage-unit-files to one unit, and that right is root-equivalent.)
  polkitRule =
    { user, unit }:
    ''
      // barkeep: ${user} may start, stop and restart ${unit}, nothing else.
      polkit.addRule(function (action, subject) {
        if (action.id == "org.freedesktop.systemd1.manage-units" &&
            subject.user == ${builtins.toJSON user} &&
            action.lookup("unit") == ${builtins.toJSON unit}) {
          var verb = action.lookup("verb");
          if (verb == "start" || verb == "stop" || verb == "restart") {
            return polkit.Result.YES;
          }
        }
      });
    '';

  # --- the read-only verify role ---------------------------------------------------------------
  # barkeep runs verify queries against a paused restore as `role`: LOGIN, no superuser, no
  # CREATEDB/CREATEROLE/REPLICATION/BYPASSRLS (ensureClauses), a member of the role that owns
  # `database` and of nothing else, reached only by peer authentication from barkeep's OS user
  # through an ident map of its own. Never a member of a superuser role (SET ROLE would make it
  # one) nor of pg_read_all_data (it reads pg_authid's password hashes), pg_write_all_data,
  # pg_read_server_files, pg_write_server_files, pg_execute_server_program, pg_signal_backend.

  verifyIdentMapName = "barkeep";

  # pg_hba.conf line: only this role, only this database, only over the socket, only by peer.
  verifyHbaLine =
    { database, role }:
    "local ${database} ${role} peer map=${verifyIdentMapName}";

  # pg_ident.conf line: barkeep's OS user may connect as the verify role.
  verifyIdentLine =
    { osUser, role }:
    "${verifyIdentMapName} ${osUser} ${role}";

  # Roles the verify role must never reach, directly or through the owner's role.
  verifyForbiddenRoles = [
    "pg_read_all_data"
    "pg_write_all_data"
    "pg_read_server_files"
    "pg_write_server_files"
    "pg_execute_server_program"
    "pg_signal_backend"
  ];

  # SQL run by postgresql-setup.service after nixpkgs' ensureUsers (so both roles exist and the
  # database belongs to `owner`): drop every membership of the verify role but the owner's, then
  # grant the owner's role, unless the owner is (or can become) a superuser or one of the
  # forbidden roles: then the verify role gets nothing and a warning goes to the journal
  # (verify queries then fail with "permission denied", never run with more rights).
  verifyGrantSql =
    { role, owner }:
    let
      lit = s: "'${s}'";
      forbidden = concatMapStringsSep ", " lit verifyForbiddenRoles;
    in
    ''
      DO $barkeep$
      DECLARE
        r record;
        unsafe text;
      BEGIN
        FOR r IN
          SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
          WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = ${lit role})
            AND g.rolname <> ${lit owner}
        LOOP
          EXECUTE format('REVOKE %I FROM %I', r.rolname, ${lit role});
        END LOOP;
        SELECT string_agg(g.rolname, ', ' ORDER BY g.rolname) INTO unsafe FROM pg_roles g
        WHERE (g.rolsuper OR g.rolname IN (${forbidden}))
          AND pg_has_role(${lit owner}, g.oid, 'MEMBER');
        IF unsafe IS NULL THEN
          EXECUTE format('GRANT %I TO %I', ${lit owner}, ${lit role});
        ELSE
          IF pg_has_role(${lit role}, ${lit owner}, 'MEMBER') THEN
            EXECUTE format('REVOKE %I FROM %I', ${lit owner}, ${lit role});
          END IF;
          RAISE WARNING 'barkeep: the database owner % is or reaches %, so % is granted nothing and verify queries will be refused', ${lit owner}, unsafe, ${lit role};
        END IF;
      END
      $barkeep$;
    '';

  # Shell for postgresql-setup.service, placed before nixpkgs' own wait loop (which asks ten
  # times a second until the server leaves recovery): while a restore is paused at its target
  # (in recovery), wait quietly; postgresql-setup then does its work once barkeep has accepted
  # the restore (promotion) or rolled it back. A stop of postgresql.service stops this unit too
  # (Requires=), which systemd counts as a clean stop, not a failure.
  setupWaitWhileRecovering = ''
    # barkeep: a restore paused at its target is in recovery until it is accepted or rolled back
    while [ "$(psql -d postgres -XtAc 'SELECT pg_is_in_recovery()' 2>/dev/null)" = t ]; do
      sleep 5
    done
  '';

  # Start conditions for postgresql.service, whose preStart runs initdb when PG_VERSION is
  # missing. A condition that does not hold makes systemd skip the start: no initdb, no failure,
  # no Restart=always loop, and no count against the start rate limit.
  #  - Once barkeep protects a cluster (<state_dir>/initdb-guard, written by barman-init), an
  #    empty data directory means a restore is under way or was interrupted: start only if
  #    PG_VERSION exists ("|" = triggering conditions, at least one must hold).
  #  - While <state_dir>/postgresql-start-blocked exists (a restore may create it for its whole
  #    length, e.g. while barman recover is still copying), no start at all.
  # barkeep's own start after `barman recover` passes both (PG_VERSION restored, block removed).
  postgresqlStartConditions =
    { dataDir, stateDir }:
    {
      ConditionPathExists = [
        "|${dataDir}/PG_VERSION"
        "|!${stateDir}/initdb-guard"
        "!${stateDir}/postgresql-start-blocked"
      ];
    };
}
