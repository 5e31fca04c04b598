//! Who may connect and what they may do: users from `[[opcua.users]]` with argon2 password
//! hashes, optional anonymous access, and roles (viewers read and subscribe; operators also
//! call the machines' methods).

use std::collections::BTreeMap;
use std::sync::Arc;

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use async_trait::async_trait;
use opcua::server::ServerEndpoint;
use opcua::server::authenticator::{
    AuthManager, Password, UserToken, user_pass_security_policy_id,
};
use opcua::types::{Error, StatusCode, UAString, UserTokenPolicy, UserTokenType};

use crate::config::{OpcuaUser, Role};
use crate::northbound::http::Telemetry;

/// The policy id of anonymous logins (async-opcua's).
const POLICY_ANONYMOUS: &str = "anonymous";

/// Checks logins against the configured users.
pub struct Users {
    users: BTreeMap<String, OpcuaUser>,
    anonymous: bool,
    telemetry: Arc<Telemetry>,
}

impl Users {
    pub fn new(users: &[OpcuaUser], anonymous: bool, telemetry: Arc<Telemetry>) -> Self {
        Self {
            users: users.iter().map(|u| (u.name.clone(), u.clone())).collect(),
            anonymous,
            telemetry,
        }
    }

    /// The role of a logged-in user (anonymous users are viewers).
    pub fn role(&self, token: &UserToken) -> Role {
        if token.is_anonymous() {
            return Role::Viewer;
        }
        self.users
            .get(&token.0)
            .map(|u| u.role)
            .unwrap_or(Role::Viewer)
    }

    fn refuse(&self, why: String) -> Error {
        Telemetry::add(&self.telemetry.opcua_logins_refused_total, 1);
        tracing::warn!(reason = %why, "OPC UA login refused");
        Error::new(StatusCode::BadUserAccessDenied, why)
    }
}

/// A PHC hash made by `shopbridge hash-password`: argon2id with the crate's defaults.
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches the PHC `hash`.
pub fn verify_password(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

#[async_trait]
impl AuthManager for Users {
    async fn authenticate_anonymous_token(&self, endpoint: &ServerEndpoint) -> Result<(), Error> {
        if self.anonymous {
            Ok(())
        } else {
            Err(self.refuse(format!(
                "anonymous access is off (endpoint {} {})",
                endpoint.security_policy, endpoint.security_mode
            )))
        }
    }

    async fn authenticate_username_identity_token(
        &self,
        _endpoint: &ServerEndpoint,
        username: &str,
        password: &Password,
    ) -> Result<UserToken, Error> {
        let Some(user) = self.users.get(username) else {
            return Err(self.refuse(format!("no user {username:?}")));
        };
        // argon2 takes tens of milliseconds on purpose: keep it off the I/O threads.
        let hash = user.password_hash.clone();
        let pw = password.get().to_string();
        let ok = tokio::task::spawn_blocking(move || verify_password(&hash, &pw))
            .await
            .unwrap_or(false);
        if ok {
            tracing::info!(user = %username, role = user.role.name(), "OPC UA user logged in");
            Ok(UserToken(username.to_string()))
        } else {
            Err(self.refuse(format!("wrong password for user {username:?}")))
        }
    }

    fn user_token_policies(&self, endpoint: &ServerEndpoint) -> Vec<UserTokenPolicy> {
        let mut out = Vec::new();
        if self.anonymous {
            out.push(UserTokenPolicy {
                policy_id: UAString::from(POLICY_ANONYMOUS),
                token_type: UserTokenType::Anonymous,
                issued_token_type: UAString::null(),
                issuer_endpoint_url: UAString::null(),
                security_policy_uri: UAString::null(),
            });
        }
        if !self.users.is_empty() {
            let policy = endpoint.password_security_policy();
            out.push(UserTokenPolicy {
                policy_id: user_pass_security_policy_id(endpoint),
                token_type: UserTokenType::UserName,
                issued_token_type: UAString::null(),
                issuer_endpoint_url: UAString::null(),
                // On an unsecured endpoint the password is still encrypted with the server's
                // certificate: say with which policy.
                security_policy_uri: if endpoint.security_policy() == policy {
                    UAString::null()
                } else {
                    UAString::from(policy.to_uri())
                },
            });
        }
        out
    }

    fn is_user_executable(&self, token: &UserToken, _method_id: &opcua::types::NodeId) -> bool {
        self.role(token) >= Role::Operator
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_wrong_passwords_do_not() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password(&h, "s3cret"));
        assert!(!verify_password(&h, "s3cret "));
        assert!(!verify_password("not a hash", "s3cret"));
    }
}
