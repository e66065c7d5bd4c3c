-- The `notifier` projector (real-time notifications, DESIGN decision 12) starts at the newest
-- stored event, not at the beginning: on a database that already has history, replaying months
-- of events to live subscribers would be noise, not news. On a fresh database this is (0, 0).
-- A running projector never goes back: its checkpoint only moves forward from here.
INSERT INTO projector_checkpoints (name, tx_id, global_position)
SELECT 'notifier', COALESCE(MAX(tx_id::text::bigint), 0), COALESCE(MAX(global_position), 0)
  FROM events
ON CONFLICT (name) DO NOTHING;
