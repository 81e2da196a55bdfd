//! `users`: people who sign in and own subscriptions.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::schema::users;
use crate::domain::{EmailAddress, UserId};

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

/// A user as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
}

/// A user to create.
#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub id: UserId,
    pub email: &'a str,
    pub password_hash: &'a str,
}

/// Inserts a user; a taken email is a unique violation.
pub async fn insert(conn: &mut AsyncPgConnection, user: &NewUser<'_>) -> QueryResult<User> {
    diesel::insert_into(users::table)
        .values(user)
        .returning(User::as_returning())
        .get_result(conn)
        .await
}

/// Finds a user by email, whatever its case.
pub async fn find_by_email(
    conn: &mut AsyncPgConnection,
    email: &EmailAddress,
) -> QueryResult<Option<User>> {
    users::table
        .filter(lower(users::email).eq(email.as_str()))
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}
