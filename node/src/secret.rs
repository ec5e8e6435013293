//! Secrets in config: given inline, from an environment variable, or from a
//! file; resolved once at start with errors that name the key; never printed.
//!
//! Floor 0: imports nothing of the crate. [`Secret`] is the one type that
//! holds a resolved secret anywhere in the node (SLS keys, HEC tokens, the
//! cloud tag APIs' keys).

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// A secret string: its `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for signing. Keep the borrow short.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How a secret is given in the config file:
/// `token = "…"`, `token = { env = "HEC_TOKEN" }` or `token = { file = "/run/secrets/hec" }`.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum SecretSource {
    Inline(String),
    Env { env: String },
    File { file: PathBuf },
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Inline(_) => f.write_str("Inline(***)"),
            SecretSource::Env { env } => write!(f, "Env({env})"),
            SecretSource::File { file } => write!(f, "File({})", file.display()),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SecretError {
    #[error("{key}: environment variable {var} is not set")]
    MissingEnv { key: String, var: String },
    #[error("{key}: cannot read {path}: {reason}")]
    File {
        key: String,
        path: PathBuf,
        reason: String,
    },
    #[error("{key}: the secret is empty")]
    Empty { key: String },
}

impl SecretSource {
    /// Resolves the secret; `key` names it in errors (`sinks[0].token`).
    pub fn resolve(&self, key: &str) -> Result<Secret, SecretError> {
        let value = match self {
            SecretSource::Inline(v) => v.clone(),
            SecretSource::Env { env } => {
                std::env::var(env).map_err(|_| SecretError::MissingEnv {
                    key: key.to_owned(),
                    var: env.clone(),
                })?
            }
            SecretSource::File { file } => std::fs::read_to_string(file)
                .map_err(|e| SecretError::File {
                    key: key.to_owned(),
                    path: file.clone(),
                    reason: e.to_string(),
                })?
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
        };
        if value.is_empty() {
            return Err(SecretError::Empty {
                key: key.to_owned(),
            });
        }
        Ok(Secret::new(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_resolve_and_errors_name_the_key() {
        assert_eq!(
            SecretSource::Inline("s3cret".into())
                .resolve("k")
                .unwrap()
                .expose(),
            "s3cret"
        );
        let e = SecretSource::Env {
            env: "TRAIL_SURELY_UNSET_VAR".into(),
        }
        .resolve("sinks[0].token")
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "sinks[0].token: environment variable TRAIL_SURELY_UNSET_VAR is not set"
        );
        let e = SecretSource::File {
            file: "/nonexistent/x".into(),
        }
        .resolve("source.access_key_secret")
        .unwrap_err();
        assert!(e
            .to_string()
            .starts_with("source.access_key_secret: cannot read /nonexistent/x"));
        assert!(!format!("{:?}", SecretSource::Inline("s3cret".into())).contains("s3cret"));
    }
}
