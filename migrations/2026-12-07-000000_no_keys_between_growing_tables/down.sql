DROP TRIGGER deliveries_take_their_attempts ON deliveries;
DROP FUNCTION delete_attempts_of_deleted_deliveries();
DELETE FROM delivery_attempts
    WHERE NOT EXISTS (SELECT FROM deliveries WHERE deliveries.id = delivery_attempts.delivery_id);
ALTER TABLE delivery_attempts ADD CONSTRAINT delivery_attempts_delivery_id_fkey
    FOREIGN KEY (delivery_id) REFERENCES deliveries (id) ON DELETE CASCADE;
DELETE FROM deliveries WHERE NOT EXISTS (SELECT FROM events WHERE events.id = deliveries.event_id);
ALTER TABLE deliveries ADD CONSTRAINT deliveries_event_id_fkey
    FOREIGN KEY (event_id) REFERENCES events (id) ON DELETE CASCADE;
