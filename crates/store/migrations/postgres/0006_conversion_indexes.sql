-- No query reads conversions by click id: the index only cost a random
-- B-tree insert per conversion.
DROP INDEX conversions_click;

-- Adjustments (reversals, chargebacks, falls of a running total) find the
-- validated conversion of an integration's transaction id; with only
-- (integration_id, received_at) that was a scan of every conversion of the
-- integration, per adjustment.
DROP INDEX conversions_integration;
CREATE INDEX conversions_validated_tx ON conversions(integration_id, transaction_id)
    WHERE status = 'validated';
