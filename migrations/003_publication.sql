-- The publication pgroar subscribes to ([postgres].publication, default "pgroar"): exactly the
-- source tables. Re-running it sets the table list again. Run as the tables' owner (or a
-- superuser). Idempotent.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_publication WHERE pubname = 'pgroar') THEN
    CREATE PUBLICATION pgroar FOR TABLE
      "Image", "TagsOnImage", "ImageTool", "ImageModelVersion", "Post", "ModelVersion";
  ELSE
    ALTER PUBLICATION pgroar SET TABLE
      "Image", "TagsOnImage", "ImageTool", "ImageModelVersion", "Post", "ModelVersion";
  END IF;
END
$$;
