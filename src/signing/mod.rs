//! Webhook signatures: the ones we put on deliveries and the providers' ones we verify at ingest.

pub mod incoming;
pub mod outgoing;

use hmac::Mac;
use hmac::digest::KeyInit;

/// An HMAC under `key` that has absorbed `parts` in order, ready to finalize or verify.
fn mac<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> M {
    // HMAC hashes long keys and pads short ones, so no key length is ever refused.
    let mut mac = <M as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac
}
