//! Webhook signatures: the ones we put on deliveries and the providers' ones we verify at ingest.
