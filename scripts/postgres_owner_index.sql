SET client_min_messages = warning;
-- The local stack's stand-in for the owner-led indexes Atlas keeps. FerretDB 1.24 pushes an
-- equality on the top-level owner down into PostgreSQL as `_jsonb->'UserId' @> '…'`, which its
-- own btree expression indexes do not serve, so PostgreSQL would read the whole table. For each
-- table FerretDB creates for a collection, this adds a GIN index on that expression, which
-- serves `@>`. Idempotent; applied by scripts/lib.sh when it starts PostgreSQL.
CREATE OR REPLACE FUNCTION leafy_owner_index() RETURNS event_trigger
LANGUAGE plpgsql AS $$
DECLARE
  created record;
BEGIN
  FOR created IN
    SELECT objid, object_identity FROM pg_event_trigger_ddl_commands()
    WHERE command_tag = 'CREATE TABLE' AND object_type = 'table'
  LOOP
    IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = created.objid AND attname = '_jsonb') THEN
      EXECUTE format('CREATE INDEX ON %s USING gin ((_jsonb -> ''UserId'') jsonb_path_ops)',
                     created.object_identity);
    END IF;
  END LOOP;
END $$;
DROP EVENT TRIGGER IF EXISTS leafy_owner_index;
CREATE EVENT TRIGGER leafy_owner_index ON ddl_command_end WHEN TAG IN ('CREATE TABLE')
  EXECUTE FUNCTION leafy_owner_index();
