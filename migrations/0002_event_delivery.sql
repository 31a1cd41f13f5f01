-- When an event's webhook was delivered; a redelivered queue message skips the POST once it is set.
ALTER TABLE events ADD COLUMN webhook_delivered_at INTEGER;
