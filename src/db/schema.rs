// @generated automatically by Diesel CLI.

diesel::table! {
    api_keys (id) {
        id -> Uuid,
        workspace_id -> Uuid,
        name -> Text,
        prefix -> Text,
        key_hash -> Bytea,
        created_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        last_used_at -> Nullable<Timestamptz>,
        role -> Text,
        created_by -> Nullable<Uuid>,
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
        deliveries -> Int8,
    }
}

diesel::table! {
    audit_log (id) {
        id -> Int8,
        workspace_id -> Nullable<Uuid>,
        at -> Timestamptz,
        actor_type -> Text,
        actor_id -> Nullable<Uuid>,
        actor -> Text,
        action -> Text,
        object_type -> Text,
        object_id -> Nullable<Text>,
        ip -> Nullable<Text>,
        detail -> Nullable<Text>,
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
        counted_attempts -> Int4,
        due_since -> Timestamptz,
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
    invitations (id) {
        id -> Uuid,
        workspace_id -> Uuid,
        email -> Text,
        role -> Text,
        token_hash -> Bytea,
        invited_by -> Nullable<Uuid>,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        accepted_at -> Nullable<Timestamptz>,
        accepted_by -> Nullable<Uuid>,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    issues (id) {
        id -> Uuid,
        workspace_id -> Uuid,
        kind -> Text,
        subscription_id -> Nullable<Uuid>,
        source_id -> Uuid,
        cause -> Text,
        state -> Text,
        count -> Int8,
        first_seen -> Timestamptz,
        last_seen -> Timestamptz,
        opened_at -> Timestamptz,
        reopened -> Int4,
        acknowledged_at -> Nullable<Timestamptz>,
        acknowledged_by -> Nullable<Text>,
        resolved_at -> Nullable<Timestamptz>,
        resolved_by -> Nullable<Text>,
        examples -> Array<Uuid>,
        detail -> Text,
        transition -> Int4,
    }
}

diesel::table! {
    listen_sessions (id) {
        id -> Uuid,
        subscription_id -> Uuid,
        holder -> Uuid,
        api_key_id -> Nullable<Uuid>,
        address -> Nullable<Text>,
        replica -> Text,
        connected_at -> Timestamptz,
        seen_at -> Timestamptz,
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
    memberships (workspace_id, user_id) {
        workspace_id -> Uuid,
        user_id -> Uuid,
        role -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    notification_channels (id) {
        id -> Uuid,
        workspace_id -> Uuid,
        kind -> Text,
        name -> Text,
        target -> Text,
        signing_secret -> Nullable<Text>,
        kinds -> Array<Text>,
        created_by -> Nullable<Uuid>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    notifications (id) {
        id -> Uuid,
        channel_id -> Uuid,
        issue_id -> Uuid,
        event_type -> Text,
        transition -> Int4,
        transitions -> Int4,
        created_at -> Timestamptz,
        due_at -> Timestamptz,
        leased_until -> Nullable<Timestamptz>,
        attempts -> Int4,
        last_error -> Nullable<Text>,
        sent_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    partition_compactions (suffix) {
        suffix -> Text,
        low -> Nullable<Uuid>,
        high -> Uuid,
        started_at -> Timestamptz,
        compacted_at -> Nullable<Timestamptz>,
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
        workspace_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    source_hours (source_id, hour) {
        source_id -> Uuid,
        hour -> Timestamptz,
        events -> Int8,
    }
}

diesel::table! {
    sources (id) {
        id -> Uuid,
        workspace_id -> Uuid,
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
        workspace_id -> Uuid,
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
        kind -> Text,
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

diesel::table! {
    workspaces (id) {
        id -> Uuid,
        name -> Text,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(api_keys -> users (created_by));
diesel::joinable!(api_keys -> workspaces (workspace_id));
diesel::joinable!(attempt_hours -> subscriptions (subscription_id));
diesel::joinable!(deliveries -> subscriptions (subscription_id));
diesel::joinable!(events -> sources (source_id));
diesel::joinable!(invitations -> workspaces (workspace_id));
diesel::joinable!(issues -> sources (source_id));
diesel::joinable!(issues -> subscriptions (subscription_id));
diesel::joinable!(issues -> workspaces (workspace_id));
diesel::joinable!(listen_sessions -> api_keys (api_key_id));
diesel::joinable!(listen_sessions -> subscriptions (subscription_id));
diesel::joinable!(memberships -> users (user_id));
diesel::joinable!(memberships -> workspaces (workspace_id));
diesel::joinable!(notification_channels -> users (created_by));
diesel::joinable!(notification_channels -> workspaces (workspace_id));
diesel::joinable!(notifications -> issues (issue_id));
diesel::joinable!(notifications -> notification_channels (channel_id));
diesel::joinable!(rate_limits -> subscriptions (subscription_id));
diesel::joinable!(rejected_requests -> sources (source_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(sessions -> workspaces (workspace_id));
diesel::joinable!(source_hours -> sources (source_id));
diesel::joinable!(sources -> workspaces (workspace_id));
diesel::joinable!(subscriptions -> sources (source_id));
diesel::joinable!(subscriptions -> workspaces (workspace_id));

diesel::allow_tables_to_appear_in_same_query!(
    api_keys,
    attempt_hours,
    audit_log,
    deliveries,
    delivery_attempts,
    events,
    invitations,
    issues,
    listen_sessions,
    login_failures,
    memberships,
    notification_channels,
    notifications,
    partition_compactions,
    rate_limits,
    rejected_requests,
    sessions,
    source_hours,
    sources,
    subscriptions,
    users,
    workspaces,
);
