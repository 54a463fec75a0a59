DO $barkeep$
DECLARE
  r record;
  unsafe text;
BEGIN
  FOR r IN
    SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
    WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = 'verify_app')
      AND g.rolname <> 'app'
  LOOP
    EXECUTE format('REVOKE %I FROM %I', r.rolname, 'verify_app');
  END LOOP;
  SELECT string_agg(g.rolname, ', ' ORDER BY g.rolname) INTO unsafe FROM pg_roles g
  WHERE (g.rolsuper OR g.rolname IN ('pg_read_all_data', 'pg_write_all_data', 'pg_read_server_files', 'pg_write_server_files', 'pg_execute_server_program', 'pg_signal_backend'))
    AND pg_has_role('app', g.oid, 'MEMBER');
  IF unsafe IS NULL THEN
    EXECUTE format('GRANT %I TO %I', 'app', 'verify_app');
  ELSE
    IF pg_has_role('verify_app', 'app', 'MEMBER') THEN
      EXECUTE format('REVOKE %I FROM %I', 'app', 'verify_app');
    END IF;
    RAISE WARNING 'barkeep: the database owner % is or reaches %, so % is granted nothing and verify queries will be refused', 'app', unsafe, 'verify_app';
  END IF;
END
$barkeep$;
