-- Projectors and the webhook processor are no longer woken by NOTIFY (docs/decisions/0029).
--
-- A transaction that sends NOTIFY takes a database-wide lock before it commits and holds it until
-- its commit record is flushed, so all notifying transactions commit one after the other: with
-- these statement triggers, every event append and every webhook insert serialised on one lock
-- and one WAL flush at a time (measured with pgbench, 8 clients inserting one row each:
-- 4,663 commits/s without a NOTIFY trigger, 1,154/s with one). Herald now watches the tables'
-- identity sequences instead (projections::runtime::spawn_sequence_watcher), which locks nothing.
DROP TRIGGER events_notify ON events;
DROP FUNCTION herald_notify_events();
DROP TRIGGER webhook_inbox_notify ON webhook_inbox;
DROP FUNCTION herald_notify_webhooks();
