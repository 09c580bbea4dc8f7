//! Where refunds go: the Payroc environment a command runs against.
//!
//! The environment is part of every order's identity (and so of its Idempotency-Key), of every
//! ledger record and of the ledger's per-environment history, so it travels through the core as
//! this type and becomes text only where it is written: the ledger, keys and messages. The
//! command line's own type for it lives with the other options (`cli`), so that this one does
//! not depend on how arguments are parsed.

use std::fmt;

/// Where refunds go: the embedded sandbox, Payroc's test environment or production.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Environment {
    /// An embedded local sandbox: no money moves.
    Sandbox,
    /// Payroc's test environment (api.uat.payroc.com).
    Uat,
    /// Payroc production: real money.
    Production,
}

impl Environment {
    /// Every environment, for reading the stored names back.
    pub const ALL: [Environment; 3] = [Environment::Sandbox, Environment::Uat, Environment::Production];

    /// The name used in keys, the ledger and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Sandbox => "sandbox",
            Environment::Uat => "uat",
            Environment::Production => "production",
        }
    }

    /// Parses a stored name exactly as [`Environment::as_str`] writes it. Anything else read
    /// from the ledger is a corrupt ledger, never a default: a default would put a row under
    /// another environment's keys.
    pub fn parse(text: &str) -> Option<Environment> {
        Environment::ALL
            .into_iter()
            .find(|environment| environment.as_str() == text)
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_environment_reads_back_by_its_stored_name_only() {
        for environment in Environment::ALL {
            assert_eq!(Environment::parse(environment.as_str()), Some(environment));
            assert_eq!(environment.to_string(), environment.as_str());
        }
        for other in ["", "Sandbox", " uat", "prod", "invalid"] {
            assert_eq!(Environment::parse(other), None, "{other:?}");
        }
    }
}
