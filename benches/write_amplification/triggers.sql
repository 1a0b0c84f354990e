-- The trigger pipeline pgroar replaces, for the image feed (docs/examples/image-feed.toml): an
-- ops table and one AFTER … FOR EACH ROW trigger per table writing the field-level ops as JSON,
-- the way an outbox pipeline does. Used only to measure write amplification
-- (benches/write_amplification/run.sh, docs/comparison.md).
CREATE TABLE pgroar_ops (
    id bigserial PRIMARY KEY,
    entity_id bigint NOT NULL,
    ops jsonb NOT NULL,
    creates_slot boolean NOT NULL DEFAULT false,
    committed_at timestamptz DEFAULT now()
);

CREATE FUNCTION pgroar_pair(field text, old_v jsonb, new_v jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN old_v IS NOT DISTINCT FROM new_v THEN '[]'::jsonb
    ELSE jsonb_build_array(
      jsonb_build_object('op', 'remove', 'field', field, 'value', old_v),
      jsonb_build_object('op', 'set', 'field', field, 'value', new_v)) END
$$;

CREATE FUNCTION pgroar_image_fields(r "Image") RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT jsonb_build_object(
    'id', r.id, 'nsfwLevel', r."nsfwLevel", 'userId', r."userId", 'postId', r."postId",
    'type', r.type::text,
    'existedAt', extract(epoch from GREATEST(r."scannedAt", r."createdAt"))::bigint,
    'hasMeta', (r.flags & (1 << 13)) != 0 AND (r.flags & (1 << 2)) = 0,
    'onSite', (r.flags & 1) != 0,
    'blocked', r."blockedFor" IS NOT NULL)
$$;

CREATE FUNCTION pgroar_image() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  o jsonb; n jsonb; ops jsonb := '[]'; k text;
BEGIN
  IF TG_OP = 'DELETE' THEN
    INSERT INTO pgroar_ops (entity_id, ops) VALUES (OLD.id, '[{"op": "delete"}]');
    RETURN OLD;
  END IF;
  n := pgroar_image_fields(NEW);
  IF TG_OP = 'INSERT' THEN
    FOR k IN SELECT jsonb_object_keys(n) LOOP
      ops := ops || jsonb_build_array(jsonb_build_object('op', 'set', 'field', k, 'value', n -> k));
    END LOOP;
    INSERT INTO pgroar_ops (entity_id, ops, creates_slot) VALUES (NEW.id, ops, true);
    RETURN NEW;
  END IF;
  o := pgroar_image_fields(OLD);
  FOR k IN SELECT jsonb_object_keys(n) LOOP
    ops := ops || pgroar_pair(k, o -> k, n -> k);
  END LOOP;
  IF jsonb_array_length(ops) > 0 THEN
    INSERT INTO pgroar_ops (entity_id, ops) VALUES (NEW.id, ops);
  END IF;
  RETURN NEW;
END $$;

CREATE FUNCTION pgroar_link() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  field text := TG_ARGV[0]; col text := TG_ARGV[1];
  r record;
BEGIN
  IF TG_OP IN ('DELETE', 'UPDATE') THEN
    r := OLD;
    INSERT INTO pgroar_ops (entity_id, ops) VALUES ((to_jsonb(r) ->> 'imageId')::bigint,
      jsonb_build_array(jsonb_build_object('op', 'remove', 'field', field, 'value', to_jsonb(r) -> col)));
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    r := NEW;
    INSERT INTO pgroar_ops (entity_id, ops) VALUES ((to_jsonb(r) ->> 'imageId')::bigint,
      jsonb_build_array(jsonb_build_object('op', 'add', 'field', field, 'value', to_jsonb(r) -> col)));
  END IF;
  RETURN NULL;
END $$;

CREATE FUNCTION pgroar_post() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    INSERT INTO pgroar_ops (entity_id, ops) VALUES (OLD.id, jsonb_build_array(jsonb_build_object(
      'op', 'queryOpSet', 'query', 'postId eq ' || OLD.id, 'ops', jsonb_build_array(
        jsonb_build_object('op', 'set', 'field', 'publishedAt', 'value', NULL),
        jsonb_build_object('op', 'set', 'field', 'availability', 'value', NULL)))));
    RETURN OLD;
  END IF;
  INSERT INTO pgroar_ops (entity_id, ops) VALUES (NEW.id, jsonb_build_array(jsonb_build_object(
    'op', 'queryOpSet', 'query', 'postId eq ' || NEW.id, 'ops', jsonb_build_array(
      jsonb_build_object('op', 'set', 'field', 'publishedAt',
        'value', extract(epoch from NEW."publishedAt")::bigint),
      jsonb_build_object('op', 'set', 'field', 'availability', 'value', NEW.availability::text)))));
  RETURN NEW;
END $$;

CREATE FUNCTION pgroar_model_version() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE r "ModelVersion";
BEGIN
  IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
  INSERT INTO pgroar_ops (entity_id, ops) VALUES (r.id, jsonb_build_array(jsonb_build_object(
    'op', 'queryOpSet', 'query', 'modelVersionIds eq ' || r.id, 'ops', jsonb_build_array(
      jsonb_build_object('op', 'set', 'field', 'baseModels',
        'value', CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE r."baseModel" END)))));
  RETURN NULL;
END $$;

CREATE TRIGGER pgroar_ops AFTER INSERT OR UPDATE OR DELETE ON "Image"
  FOR EACH ROW EXECUTE FUNCTION pgroar_image();
CREATE TRIGGER pgroar_ops AFTER INSERT OR UPDATE OR DELETE ON "TagsOnImage"
  FOR EACH ROW EXECUTE FUNCTION pgroar_link('tagIds', 'tagId');
CREATE TRIGGER pgroar_ops AFTER INSERT OR UPDATE OR DELETE ON "ImageTool"
  FOR EACH ROW EXECUTE FUNCTION pgroar_link('toolIds', 'toolId');
CREATE TRIGGER pgroar_ops AFTER INSERT OR UPDATE OR DELETE ON "ImageModelVersion"
  FOR EACH ROW EXECUTE FUNCTION pgroar_link('modelVersionIds', 'modelVersionId');
CREATE TRIGGER pgroar_ops AFTER INSERT OR UPDATE OR DELETE ON "Post"
  FOR EACH ROW EXECUTE FUNCTION pgroar_post();
CREATE TRIGGER pgroar_ops AFTER INSERT OR UPDATE OR DELETE ON "ModelVersion"
  FOR EACH ROW EXECUTE FUNCTION pgroar_model_version();
