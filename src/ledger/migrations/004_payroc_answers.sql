-- Schema version 4: the rest of what Payroc says about a refund.

-- `transactionResult.authorizedAmount` as a positive number of minor units (a partial approval
-- is less than `amount_minor`), `approvalCode` and `processorResponseCode`.
ALTER TABLE refunds ADD COLUMN authorized_amount_minor INTEGER;
ALTER TABLE refunds ADD COLUMN approval_code TEXT;
ALTER TABLE refunds ADD COLUMN processor_response_code TEXT;
-- Warnings about the answer (a custom field Payroc left out, a status this version does not know).
ALTER TABLE refunds ADD COLUMN notes TEXT;
