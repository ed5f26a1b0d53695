-- Version 3, "tenant keys": the AES-256-GCM keys daemons seal pieces at rest with (issue 21), one row per tenant and
-- version. Rotation adds a version; none is ever changed, since tasks sealed under it stay
-- on daemons' disks. Deleting a tenant's rows makes what its daemons hold unreadable.
-- Released: never edited; a change goes in a new version (see ../migrations.ts).
CREATE TABLE tenant_keys (
  tenant_id integer NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  version integer NOT NULL CHECK (version > 0),
  key bytea NOT NULL CHECK (length(key) = 32),
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, version)
);
