-- Replica identities. With the image feed's config every table can keep the primary key
-- (DEFAULT): a DELETE then carries the key, which is all pgroar needs. A table needs FULL when
-- pgroar must see a column outside the key in a DELETE or an UPDATE's old row — a join table
-- with a `filter` on another column, a fan-out table whose query reads a non-key column — and
-- `pgroar run` says which ALTER TABLE is missing at start-up. FULL costs WAL: every UPDATE and
-- DELETE then writes the whole old row (see docs/postgres-setup.md for the measured cost).
-- Run as the tables' owner. Idempotent.
ALTER TABLE "Image" REPLICA IDENTITY DEFAULT;
ALTER TABLE "TagsOnImage" REPLICA IDENTITY DEFAULT;
ALTER TABLE "ImageTool" REPLICA IDENTITY DEFAULT;
ALTER TABLE "ImageModelVersion" REPLICA IDENTITY DEFAULT;
ALTER TABLE "Post" REPLICA IDENTITY DEFAULT;
ALTER TABLE "ModelVersion" REPLICA IDENTITY DEFAULT;
