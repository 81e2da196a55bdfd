-- A subscription's delivery attempts counted per hour, once the hour can gain no attempt: the
-- day chart reads at most 23 of these rows and one hour of attempts, where it would otherwise
-- read a day of attempts (a million, for a busy endpoint). Filled when a chart needs an hour;
-- hours older than a day are dropped then. An hour with no attempt has a row of zeros.
CREATE TABLE attempt_hours (
    subscription_id uuid NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    hour timestamptz NOT NULL,
    succeeded bigint NOT NULL,
    refused bigint NOT NULL,
    server_error bigint NOT NULL,
    no_answer bigint NOT NULL,
    p50_ms double precision NOT NULL,
    p95_ms double precision NOT NULL,
    PRIMARY KEY (subscription_id, hour)
);
