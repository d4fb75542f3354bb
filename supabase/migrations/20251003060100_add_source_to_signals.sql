-- Migration 013 (013_add_source_to_signals.sql), as written in the signal source tracking design.
-- Which side generated a signal: 'local' (the browser tab) or 'cloud' (the user's Fly.io machine).

-- Add source column to differentiate local vs cloud signals
ALTER TABLE signals ADD COLUMN IF NOT EXISTS source TEXT DEFAULT 'local';
ALTER TABLE signals ADD CONSTRAINT signals_source_check
  CHECK (source IN ('local', 'cloud'));

-- Add machine_id reference for cloud signals
ALTER TABLE signals ADD COLUMN IF NOT EXISTS machine_id UUID
  REFERENCES cloud_machines(id) ON DELETE SET NULL;

-- Indexes for performance
CREATE INDEX IF NOT EXISTS idx_signals_source ON signals(source);
CREATE INDEX IF NOT EXISTS idx_signals_machine_id ON signals(machine_id);
CREATE INDEX IF NOT EXISTS idx_signals_trader_source ON signals(trader_id, source);

-- Comments for clarity
COMMENT ON COLUMN signals.source IS
  'Execution source: local (browser) or cloud (Fly.io machine)';
COMMENT ON COLUMN signals.machine_id IS
  'Reference to cloud_machines table for cloud-sourced signals';

-- Set defaults for existing signals
UPDATE signals SET source = 'local' WHERE source IS NULL;
ALTER TABLE signals ALTER COLUMN source SET NOT NULL;

-- Beyond 013: a browser signal never names a machine. (A cloud signal may lose its machine_id when
-- the machine row is deleted: ON DELETE SET NULL above.)
ALTER TABLE signals ADD CONSTRAINT signals_local_has_no_machine
  CHECK (source = 'cloud' OR machine_id IS NULL);

select private.register_component('source_tracking', 1, '20251003060100_add_source_to_signals');
