//! VAPIX service-account credentials from D-Bus, as an ACAP app gets them on the device.
//!
//! The device's HTTP configuration service hands an app the user name and password of a
//! VAPIX service account: method `GetCredentials(s account) -> s` of interface
//! `com.axis.HTTPConf1.VAPIXServiceAccounts1`, object `/com/axis/HTTPConf1/VAPIXServiceAccounts1`,
//! service `com.axis.HTTPConf1`, on the system bus. The answer is `"user:password"`. The app's
//! manifest must list the method in `resources.dbus.requiredMethods`. The credentials are kept
//! in memory only: accounts do not survive a reboot, so they are fetched at every start.
//!
//! The system bus is found through `DBUS_SYSTEM_BUS_ADDRESS` (a D-Bus address such as
//! `unix:path=/run/dbus/system_bus_socket`), else the standard socket; tests point it to a
//! private bus. The call uses zbus (pure Rust) and gives up after [`CALL_TIMEOUT`].

use std::time::Duration;

use super::ActionError;
use crate::config::Secret;

/// Service (bus name) of the VAPIX service accounts.
pub const SERVICE: &str = "com.axis.HTTPConf1";
/// Object path of the VAPIX service accounts.
pub const OBJECT: &str = "/com/axis/HTTPConf1/VAPIXServiceAccounts1";
/// Interface of the VAPIX service accounts.
pub const INTERFACE: &str = "com.axis.HTTPConf1.VAPIXServiceAccounts1";
/// The method returning `"user:password"`.
pub const METHOD: &str = "GetCredentials";
/// How long the method call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The user name and password of VAPIX service account `account`, from D-Bus
/// `com.axis.HTTPConf1.VAPIXServiceAccounts1.GetCredentials` on the system bus.
///
/// # Errors
/// [`ActionError::Local`] naming the method, the account and the bus address: the bus cannot
/// be reached, the service or method does not exist or refuses (the manifest does not list the
/// method), the call times out, or the answer is not a string `"user:password"` with a user.
/// The error never contains the password.
pub fn vapix_credentials(account: &str) -> Result<(String, Secret), ActionError> {
    let bus = std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
        .unwrap_or_else(|_| "unix:path=/var/run/dbus/system_bus_socket".into());
    let fail = |reason: String| {
        ActionError::Local {
        what: format!("calling D-Bus {INTERFACE}.{METHOD}({account:?}) of {SERVICE} on the system bus ({bus})"),
        reason,
    }
    };
    let connection = zbus::blocking::connection::Builder::system()
        .and_then(|b| b.method_timeout(CALL_TIMEOUT).build())
        .map_err(|e| fail(format!("cannot connect: {e}")))?;
    let reply = connection
        .call_method(Some(SERVICE), OBJECT, Some(INTERFACE), METHOD, &(account,))
        .map_err(|e| fail(describe(&e)))?;
    let answer: String = reply
        .body()
        .deserialize()
        .map_err(|_| fail("the answer is not a single string".into()))?;
    split_credentials(answer).map_err(|e| fail(e.into()))
}

/// `"user:password"` split at the first `:`.
fn split_credentials(answer: String) -> Result<(String, Secret), &'static str> {
    match answer.split_once(':') {
        Some((user, password)) if !user.is_empty() => Ok((user.to_owned(), Secret::new(password))),
        Some(_) => Err("the answer has an empty user name"),
        None => Err("the answer is not \"user:password\""),
    }
}

/// A zbus error in words; a D-Bus error reply by its name and message.
fn describe(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, message, _) => match message {
            Some(m) => format!("{name}: {m}"),
            None => name.to_string(),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split() {
        let (u, p) = split_credentials("svc:pa:ss".into()).unwrap();
        assert_eq!(u, "svc");
        assert_eq!(p.expose(), "pa:ss");
        let (u, p) = split_credentials("svc:".into()).unwrap();
        assert_eq!((u.as_str(), p.expose()), ("svc", ""));
        assert!(split_credentials("nocolon".into()).is_err());
        assert!(split_credentials(":pw".into()).is_err());
        assert!(split_credentials(String::new()).is_err());
    }
}
