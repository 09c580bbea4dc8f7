//! Deterministic Idempotency-Keys: the same refund always gets the same key.
//!
//! The dispatcher sends every request with an `Idempotency-Key`; Payroc keeps a key (with the URI
//! and body it first saw) for seven days and answers a repeat with the first result instead of
//! refunding again. If the key were random, a lost ledger or a second machine would mint a new key
//! and refund twice. So the key is *derived* from what makes a refund the same refund — its
//! [`Identity`] — plus a generation number that only moves when a definite failure is retried on
//! purpose. The ledger still stores every key it hands out and stays the authority past seven days.
//!
//! The encoding is versioned and frozen: changing it would give every row a new key and break the
//! promise for rows sent before the change. The golden vectors in the tests pin it.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The tag that opens every encoding. A new encoding must use a new tag, never change this one.
const ENCODING_TAG: &[u8] = b"refund-batch/idempotency-key/v1";

/// What makes two rows the same refund, as far as sending goes.
///
/// The environment scope keeps sandbox, UAT and production keys apart; the namespace lets a team
/// run two independent ledgers for one merchant without their keys meeting.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    /// `sandbox`, `uat` or `production`.
    pub environment: String,
    /// The key namespace (`--key-namespace`), `default` unless set.
    pub namespace: String,
    /// `card` or `bank`.
    pub method: String,
    /// Payroc's processing terminal.
    pub processing_terminal_id: String,
    /// The merchant's order id for this refund.
    pub order_id: String,
}

impl Identity {
    /// A readable, unambiguous string form used as the ledger's primary key for the identity.
    ///
    /// Length-prefixed like the key encoding, so `("a|b", "c")` and `("a", "b|c")` never collide.
    pub fn ledger_id(&self) -> String {
        let mut text = String::new();
        for part in self.parts() {
            text.push_str(&part.len().to_string());
            text.push(':');
            text.push_str(part);
            text.push('|');
        }
        text
    }

    fn parts(&self) -> [&str; 5] {
        [
            &self.environment,
            &self.namespace,
            &self.method,
            &self.processing_terminal_id,
            &self.order_id,
        ]
    }

    /// The Idempotency-Key of this identity at `generation`: a version-4 UUID whose 122 random
    /// bits are the first 16 bytes of SHA-256 over the length-prefixed encoding.
    pub fn key(&self, generation: u32) -> Uuid {
        let mut hasher = Sha256::new();
        hasher.update((ENCODING_TAG.len() as u32).to_be_bytes());
        hasher.update(ENCODING_TAG);
        for part in self.parts() {
            hasher.update((part.len() as u32).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        hasher.update(generation.to_be_bytes());
        let digest = hasher.finalize();
        let mut bytes = [0_u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
}

impl Identity {
    /// The identity of `row` under `environment` and key `namespace`: the one place a row's
    /// identity is made, for keys, ledger look-ups and the results alike.
    pub fn of_row(row: &crate::refund::RefundRow, environment: &str, namespace: &str) -> Identity {
        Identity {
            environment: environment.to_owned(),
            namespace: namespace.to_owned(),
            method: row.method.as_str().to_owned(),
            processing_terminal_id: row.processing_terminal_id.clone(),
            order_id: row.order_id.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(method: &str, terminal: &str, order: &str) -> Identity {
        Identity {
            environment: "production".into(),
            namespace: "default".into(),
            method: method.into(),
            processing_terminal_id: terminal.into(),
            order_id: order.into(),
        }
    }

    /// Golden vectors: these keys must never change, or rows already sent would get new keys.
    #[test]
    fn golden_vectors() {
        let card = identity("card", "1234001", "R20240702-0001");
        assert_eq!(card.key(0).to_string(), GOLDEN_CARD_0);
        assert_eq!(card.key(1).to_string(), GOLDEN_CARD_1);
        let bank = identity("bank", "1234001", "B20240702-0001");
        assert_eq!(bank.key(0).to_string(), GOLDEN_BANK_0);
    }

    // Computed independently (Python hashlib + uuid) from the encoding described above.
    const GOLDEN_CARD_0: &str = "c7636145-d4f3-4089-a234-f5a092f736d3";
    const GOLDEN_CARD_1: &str = "81b70e6d-12d2-494f-8327-2eb834d78c4f";
    const GOLDEN_BANK_0: &str = "30500aca-0ede-43eb-925d-411b10554c67";

    #[test]
    fn keys_are_version_4_with_the_rfc_variant() {
        let key = identity("card", "1234001", "A").key(7);
        assert_eq!(key.get_version_num(), 4);
        assert_eq!(key.get_variant(), uuid::Variant::RFC4122);
    }

    #[test]
    fn every_part_of_the_identity_and_the_generation_changes_the_key() {
        let base = identity("card", "1234001", "A");
        let mut keys = vec![base.key(0), base.key(1)];
        let mut other = base.clone();
        other.environment = "uat".into();
        keys.push(other.key(0));
        let mut other = base.clone();
        other.namespace = "team-b".into();
        keys.push(other.key(0));
        keys.push(identity("bank", "1234001", "A").key(0));
        keys.push(identity("card", "1234002", "A").key(0));
        keys.push(identity("card", "1234001", "B").key(0));
        // Moving a character between fields must not collide: the encoding is length-prefixed.
        keys.push(identity("card", "1234001A", "").key(0));
        keys.push(identity("card", "123400", "1A").key(0));
        let mut unique = keys.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), keys.len());
        assert_eq!(base.key(0), identity("card", "1234001", "A").key(0));
    }

    #[test]
    fn ledger_ids_are_unambiguous() {
        assert_ne!(
            identity("card", "a|b", "c").ledger_id(),
            identity("card", "a", "b|c").ledger_id()
        );
    }
}
