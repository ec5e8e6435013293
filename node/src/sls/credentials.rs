//! Access keys and STS tokens. Secrets never reach `Debug`, `Display` or logs.

use crate::secret::Secret;

/// One set of SLS credentials: an AccessKey pair, plus a token for STS credentials.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: Secret,
    pub security_token: Option<Secret>,
}

impl Credentials {
    pub fn new(access_key_id: impl Into<String>, access_key_secret: impl Into<String>) -> Self {
        Credentials {
            access_key_id: access_key_id.into(),
            access_key_secret: Secret::new(access_key_secret),
            security_token: None,
        }
    }

    pub fn with_security_token(mut self, token: impl Into<String>) -> Self {
        self.security_token = Some(Secret::new(token));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let c = Credentials::new("LTAIexample", "very-secret").with_security_token("sts-token-xyz");
        let printed = format!("{c:?} {}", c.access_key_secret);
        assert!(printed.contains("LTAIexample"));
        assert!(!printed.contains("very-secret"), "{printed}");
        assert!(!printed.contains("sts-token-xyz"), "{printed}");
    }
}
