-- SELECT on the source tables (what `pgroar bootstrap` COPYs and `pgroar check` compares), and
-- USAGE on their schema. The list is the image feed's (docs/examples/image-feed.toml): put the
-- tables of your config's [[sources]] here. Idempotent.
GRANT USAGE ON SCHEMA public TO pgroar;
GRANT SELECT ON "Image", "TagsOnImage", "ImageTool", "ImageModelVersion", "Post", "ModelVersion"
  TO pgroar;
