-- Taking items walks a queue in `seq` order and skips those in flight: an index in that order
-- (with `visible_at` in it) finds the oldest visible item without sorting the whole queue.
DROP INDEX bus_queue_ready;
CREATE INDEX bus_queue_order ON bus_queue (queue, seq, visible_at);
