-- Version 5, "job retry": a job created by retrying another (POST /jobs/:id/retry) names it.
-- A retry is a new job rather than the old one re-queued, so a finished job's id, state and
-- result never change once a client (Harbor) has read them; the link keeps the history.
-- Deleting the original leaves the retry standing, unlinked.
-- Released: never edited; a change goes in a new version (see ../migrations.ts).
ALTER TABLE jobs ADD COLUMN retry_of integer REFERENCES jobs(id) ON DELETE SET NULL;
