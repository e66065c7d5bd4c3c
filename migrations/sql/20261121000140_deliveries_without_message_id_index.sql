-- No query reads `deliveries` by message id: receipts find their delivery through `message_index`
-- on the write side (decision 11), and the API reads recipients by campaign and phone. The index
-- cost an entry on every send and every receipt (a recipient's status change is never a HOT update
-- while `status` is indexed, so every index of the table gets a new entry each time).
DROP INDEX IF EXISTS deliveries_message_id;
