// @generated automatically by Diesel CLI.

diesel::table! {
    api_keys (id) {
        id -> Uuid,
        user_id -> Uuid,
        name -> Text,
        prefix -> Text,
        key_hash -> Bytea,
        created_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        last_used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    attempt_hours (subscription_id, hour) {
        subscription_id -> Uuid,
        hour -> Timestamptz,
        succeeded -> Int8,
        refused -> Int8,
        server_error -> Int8,
        no_answer -> Int8,
        p50_ms -> Float8,
        p95_ms -> Float8,
    }
}

diesel::table! {
    deliveries (id) {
        id -> Uuid,
        event_id -> Uuid,
        subscription_id -> Uuid,
        status -> Text,
        attempts -> Int4,
        retry_count -> Int4,
        next_attempt_at -> Nullable<Timestamptz>,
        completed_at -> Nullable<Timestamptz>,
        last_error -> Nullable<Text>,
        leased_until -> Nullable<Timestamptz>,
        republishes -> Int4,
        waiting -> Nullable<Text>,
    }
}

diesel::table! {
    delivery_attempts (delivery_id, attempt) {
        delivery_id -> Uuid,
        attempt -> Int4,
        started_at -> Timestamptz,
        duration_ms -> Int4,
        status_code -> Nullable<Int4>,
        error -> Nullable<Text>,
        response_body -> Nullable<Text>,
        subscription_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    events (id) {
        id -> Uuid,
        source_id -> Uuid,
        body -> Bytea,
        payload -> Nullable<Jsonb>,
        content_type -> Nullable<Text>,
        headers -> Jsonb,
        idempotency_key -> Nullable<Text>,
        received_at -> Timestamptz,
        path -> Text,
        query -> Text,
    }
}

diesel::table! {
    login_failures (id) {
        id -> Int8,
        email -> Text,
        failed_at -> Timestamptz,
    }
}

diesel::table! {
    rate_limits (subscription_id) {
        subscription_id -> Uuid,
        next_send -> Timestamptz,
        reserved_until -> Timestamptz,
    }
}

diesel::table! {
    rejected_requests (id) {
        id -> Uuid,
        source_id -> Uuid,
        received_at -> Timestamptz,
        reason -> Text,
        handshake -> Bool,
        method -> Text,
        path -> Text,
        headers -> Jsonb,
        body_sample -> Bytea,
        body_bytes -> Int4,
    }
}

diesel::table! {
    sessions (id) {
        id -> Uuid,
        user_id -> Uuid,
        token_hash -> Bytea,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        last_seen_at -> Timestamptz,
    }
}

diesel::table! {
    sources (id) {
        id -> Uuid,
        user_id -> Uuid,
        name -> Text,
        ingest_token -> Text,
        provider -> Nullable<Jsonb>,
        implicit -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        routing_version -> Int8,
        response -> Nullable<Jsonb>,
        last_handshake_at -> Nullable<Timestamptz>,
        last_handshake_outcome -> Nullable<Text>,
        last_handshake_answered_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    subscriptions (id) {
        id -> Uuid,
        user_id -> Uuid,
        name -> Text,
        target_url -> Text,
        signing_secret -> Text,
        previous_signing_secret -> Nullable<Text>,
        previous_secret_expires_at -> Nullable<Timestamptz>,
        is_active -> Bool,
        disabled_reason -> Nullable<Text>,
        consecutive_failures -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        source_id -> Uuid,
        filter -> Nullable<Jsonb>,
        forward_path -> Bool,
        policy -> Jsonb,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        email -> Text,
        password_hash -> Text,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(api_keys -> users (user_id));
diesel::joinable!(attempt_hours -> subscriptions (subscription_id));
diesel::joinable!(deliveries -> events (event_id));
diesel::joinable!(deliveries -> subscriptions (subscription_id));
diesel::joinable!(delivery_attempts -> deliveries (delivery_id));
diesel::joinable!(events -> sources (source_id));
diesel::joinable!(rate_limits -> subscriptions (subscription_id));
diesel::joinable!(rejected_requests -> sources (source_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(sources -> users (user_id));
diesel::joinable!(subscriptions -> sources (source_id));
diesel::joinable!(subscriptions -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    api_keys,
    attempt_hours,
    deliveries,
    delivery_attempts,
    events,
    login_failures,
    rate_limits,
    rejected_requests,
    sessions,
    sources,
    subscriptions,
    users,
);
