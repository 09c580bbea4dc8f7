//! Deterministic Idempotency-Keys: one order always gets the same key, whoever sends it.
//!
//! The dispatcher sends every request with an `Idempotency-Key`; Payroc keeps a key (with the URI
//! and body it first saw) for seven days and answers a repeat with the first result — or a 409
//! when the body differs — instead of refunding again. If the key were random, a lost ledger or a
//! second machine would mint a new key and refund twice. So the key is *derived* from what makes a
//! refund the same refund — the [`Identity`] of its order: the environment, the processing
//! terminal and the order id — plus a generation number that only moves when a definite failure is
//! retried on purpose. The payment method, the key namespace, the ledger and the host are *not*
//! part of it: an order is one refund, so a card row and a bank row for one order, or two teams
//! with two ledgers, send the same key and Payroc itself refuses the second refund within its
//! seven days. The ledger stores every key it hands out and stays the authority past them.
//!
//! The encoding is versioned and frozen: changing it would give every row a new key. Version 1
//! (which also hashed the method and the namespace) is kept as [`legacy_v1_key`] for its golden
//! vectors only: rows a ledger made under it keep their stored keys, and nothing derives new
//! keys with it. The golden vectors in the tests pin both.

use std::fmt;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::refund::{Environment, Method};

/// The tag that opens every version-2 encoding. A new encoding must use a new tag.
const ENCODING_TAG: &[u8] = b"refund-batch/idempotency-key/v2";

/// An Idempotency-Key: the version-4 UUID under which Payroc de-duplicates a refund request.
///
/// Derived for an order ([`Identity::key`]) or read back from the ledger, which keeps every key
/// it handed out. It is its own type, not text, so that nothing else (an identity, a refund id)
/// can be sent or stored in its place; it becomes text only where it is written — the request
/// header, the ledger, the results CSV and messages — always in the one form [`fmt::Display`]
/// gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey(Uuid);

impl IdempotencyKey {
    /// Parses a key written exactly as [`fmt::Display`] writes one (lower-case, hyphenated).
    /// Any other text is not a key this tool handed out: read from the ledger, it is a corrupt
    /// ledger, and accepting another spelling of the same UUID would change what the results show.
    pub fn parse(text: &str) -> Option<IdempotencyKey> {
        let key = IdempotencyKey(Uuid::try_parse(text).ok()?);
        (key.to_string() == text).then_some(key)
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), formatter)
    }
}

/// What makes two rows the same refund: one order of one terminal in one environment.
///
/// The environment scope keeps sandbox, UAT and production keys apart; nothing else may, or two
/// senders of one order would send two keys and Payroc would make two refunds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    /// Where the refund goes.
    pub environment: Environment,
    /// Payroc's processing terminal.
    pub processing_terminal_id: String,
    /// The merchant's order id for this refund.
    pub order_id: String,
}

impl Identity {
    /// The identity of `row` under `environment`: the one place a row's identity is made, for
    /// keys, ledger look-ups and the results alike.
    pub fn of_row(row: &crate::refund::RefundRow, environment: Environment) -> Identity {
        Identity {
            environment,
            processing_terminal_id: row.processing_terminal_id.clone(),
            order_id: row.order_id.clone(),
        }
    }

    /// The ledger's primary key for the order: `v2|` and the length-prefixed parts, so
    /// `("a|b", "c")` and `("a", "b|c")` never collide, and never a version-1 identity (those
    /// begin with a digit).
    pub fn ledger_id(&self) -> String {
        let mut text = String::from("v2|");
        push_length_prefixed(
            &mut text,
            [self.environment.as_str(), &self.processing_terminal_id, &self.order_id],
        );
        text
    }

    /// The ledger id an earlier version gave this order's refund by `method` under key
    /// `namespace`: a ledger written by it holds its rows under that id, with their keys.
    pub fn legacy_v1_ledger_id(&self, namespace: &str, method: Method) -> String {
        let mut text = String::new();
        push_length_prefixed(
            &mut text,
            [
                self.environment.as_str(),
                namespace,
                method.as_str(),
                &self.processing_terminal_id,
                &self.order_id,
            ],
        );
        text
    }

    /// The Idempotency-Key of this order at `generation`: a version-4 UUID whose 122 random
    /// bits are the first 16 bytes of SHA-256 over the length-prefixed encoding.
    pub fn key(&self, generation: u32) -> IdempotencyKey {
        derive(
            ENCODING_TAG,
            &[self.environment.as_str(), &self.processing_terminal_id, &self.order_id],
            generation,
        )
    }
}

/// The version-1 key of a refund (environment, namespace, method, terminal, order id): what an
/// earlier version sent. Only its golden vectors use it; a ledger keeps the keys it handed out.
#[cfg(test)]
pub fn legacy_v1_key(identity: &Identity, namespace: &str, method: Method, generation: u32) -> IdempotencyKey {
    derive(
        b"refund-batch/idempotency-key/v1",
        &[
            identity.environment.as_str(),
            namespace,
            method.as_str(),
            &identity.processing_terminal_id,
            &identity.order_id,
        ],
        generation,
    )
}

fn push_length_prefixed<'a>(text: &mut String, parts: impl IntoIterator<Item = &'a str>) {
    for part in parts {
        text.push_str(&part.len().to_string());
        text.push(':');
        text.push_str(part);
        text.push('|');
    }
}

fn derive(tag: &[u8], parts: &[&str], generation: u32) -> IdempotencyKey {
    let mut hasher = Sha256::new();
    hasher.update((tag.len() as u32).to_be_bytes());
    hasher.update(tag);
    for part in parts {
        hasher.update((part.len() as u32).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.update(generation.to_be_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0_u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    IdempotencyKey(uuid::Builder::from_random_bytes(bytes).into_uuid())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(terminal: &str, order: &str) -> Identity {
        Identity {
            environment: Environment::Production,
            processing_terminal_id: terminal.into(),
            order_id: order.into(),
        }
    }

    /// Golden vectors: these keys must never change, or orders already sent would get new keys.
    #[test]
    fn golden_vectors() {
        let card = identity("1234001", "R20240702-0001");
        assert_eq!(card.key(0).to_string(), "61ea6c39-5213-43a0-8d04-375be86bb8f2");
        assert_eq!(card.key(1).to_string(), "dbb85c4c-1f95-467f-a844-64693db02bb8");
        let bank = identity("1234001", "B20240702-0001");
        assert_eq!(bank.key(0).to_string(), "06b0e7d6-52ba-4428-b3a5-c08162494e92");
    }

    /// The version-1 derivation's vectors, as an earlier version sent them (computed
    /// independently with Python's hashlib and uuid from the encoding described above).
    #[test]
    fn legacy_v1_golden_vectors() {
        let card = identity("1234001", "R20240702-0001");
        assert_eq!(
            legacy_v1_key(&card, "default", Method::Card, 0).to_string(),
            "c7636145-d4f3-4089-a234-f5a092f736d3"
        );
        assert_eq!(
            legacy_v1_key(&card, "default", Method::Card, 1).to_string(),
            "81b70e6d-12d2-494f-8327-2eb834d78c4f"
        );
        let bank = identity("1234001", "B20240702-0001");
        assert_eq!(
            legacy_v1_key(&bank, "default", Method::Bank, 0).to_string(),
            "30500aca-0ede-43eb-925d-411b10554c67"
        );
        assert_eq!(
            card.legacy_v1_ledger_id("default", Method::Card),
            "10:production|7:default|4:card|7:1234001|14:R20240702-0001|"
        );
    }

    #[test]
    fn a_key_reads_back_only_as_it_is_written() {
        let key = identity("1234001", "A").key(0);
        assert_eq!(IdempotencyKey::parse(&key.to_string()), Some(key));
        let text = key.to_string();
        for other in [
            text.to_uppercase(),
            text.replace('-', ""),
            format!("{{{text}}}"),
            format!("urn:uuid:{text}"),
            "key-0".to_owned(),
            String::new(),
        ] {
            assert_eq!(IdempotencyKey::parse(&other), None, "{other:?}");
        }
    }

    #[test]
    fn keys_are_version_4_with_the_rfc_variant() {
        let key = identity("1234001", "A").key(7);
        assert_eq!(key.0.get_version_num(), 4);
        assert_eq!(key.0.get_variant(), uuid::Variant::RFC4122);
    }

    #[test]
    fn every_part_of_the_order_and_the_generation_changes_the_key() {
        let base = identity("1234001", "A");
        let mut keys = vec![base.key(0), base.key(1)];
        let mut other = base.clone();
        other.environment = Environment::Uat;
        keys.push(other.key(0));
        keys.push(identity("1234002", "A").key(0));
        keys.push(identity("1234001", "B").key(0));
        // Moving a character between fields must not collide: the encoding is length-prefixed.
        keys.push(identity("1234001A", "").key(0));
        keys.push(identity("123400", "1A").key(0));
        let mut unique = keys.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), keys.len());
        assert_eq!(base.key(0), identity("1234001", "A").key(0));
    }

    #[test]
    fn ledger_ids_are_unambiguous_and_never_a_legacy_one() {
        assert_ne!(identity("a|b", "c").ledger_id(), identity("a", "b|c").ledger_id());
        let order = identity("1234001", "A");
        assert!(order.ledger_id().starts_with("v2|"));
        assert!(
            order
                .legacy_v1_ledger_id("default", Method::Card)
                .starts_with(|first: char| first.is_ascii_digit())
        );
    }
}
