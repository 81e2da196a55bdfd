//! Who is signed in: accounts (sign-up, log-in and its throttle) and dashboard sessions with
//! their CSRF tokens. API keys are the JSON API's own (`api::ApiUser`).

mod accounts;
mod session;

pub use accounts::{AccountError, create_user, log_in, new_credentials, sign_up, signup_open};
pub use session::{
    CurrentWorkspace, SessionPolicy, SessionToken, SignedIn, end_session, resume_session,
    start_session, switch_workspace,
};
