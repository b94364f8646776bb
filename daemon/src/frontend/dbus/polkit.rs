//! polkit, the platform's way to authorize administration: `CheckAuthorization` on the
//! daemon's own bus (the system bus when installed), for the caller's bus name. Desktop agents
//! then ask for a password where the action says `auth_admin_keep`.

use std::collections::HashMap;

use zbus::fdo::DBusProxy;
use zbus::names::{BusName, WellKnownName};
use zbus::zvariant::Value;
use zbus::Connection;

pub const SERVICE: &str = "org.freedesktop.PolicyKit1";

/// What an administrator may do; each is an action in
/// `/usr/share/polkit-1/actions/org.inferd.Inferd1.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// LoadModel, UnloadModel, Reload and their background forms.
    ManageModels,
    /// Warmup (a TensorRT engine build can hold a GPU for minutes).
    Warmup,
}

impl Action {
    pub fn id(self) -> &'static str {
        match self {
            Action::ManageModels => "org.inferd.Inferd1.manage-models",
            Action::Warmup => "org.inferd.Inferd1.warmup",
        }
    }
}

#[zbus::proxy(
    interface = "org.freedesktop.PolicyKit1.Authority",
    default_service = "org.freedesktop.PolicyKit1",
    default_path = "/org/freedesktop/PolicyKit1/Authority"
)]
trait Authority {
    /// Returns `(is_authorized, is_challenge, details)`.
    fn check_authorization(
        &self,
        subject: &(&str, HashMap<&str, Value<'_>>),
        action_id: &str,
        details: HashMap<&str, &str>,
        flags: u32,
        cancellation_id: &str,
    ) -> zbus::Result<(bool, bool, HashMap<String, String>)>;
}

/// polkit's answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// `challenge`: an administrator's password would do, with interactive authorization.
    Denied {
        challenge: bool,
    },
    /// No polkit on this bus (neither running nor activatable).
    Absent,
}

/// `AllowUserInteraction`: polkit may ask an agent, because the caller said it can wait.
const ALLOW_USER_INTERACTION: u32 = 1;

/// Why polkit could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum PolkitError {
    #[error(transparent)]
    Bus(#[from] zbus::Error),
    #[error(transparent)]
    Fdo(#[from] zbus::fdo::Error),
    /// On a bus whose policy does not reserve the name, anyone could answer "authorized".
    #[error("{SERVICE} is owned by uid {0}, not root; it is not trusted")]
    Untrusted(u32),
}

fn service() -> WellKnownName<'static> {
    WellKnownName::from_static_str_unchecked(SERVICE)
}

async fn activatable(bus: &DBusProxy<'_>) -> Result<bool, PolkitError> {
    let names = bus.list_activatable_names().await?;
    Ok(names.iter().any(|n| n.as_str() == SERVICE))
}

/// Whether polkit runs (or can be started) on this bus.
pub async fn present(conn: &Connection) -> Result<bool, PolkitError> {
    let bus = DBusProxy::new(conn).await?;
    Ok(bus.name_has_owner(service().into()).await? || activatable(&bus).await?)
}

/// Asks the polkit authority, having checked that it runs as root (or as the daemon's own
/// uid, `own_uid`, which could grant itself anything anyway).
pub async fn check(
    conn: &Connection,
    sender: &str,
    action: Action,
    interactive: bool,
    own_uid: u32,
) -> Result<Verdict, PolkitError> {
    let bus = DBusProxy::new(conn).await?;
    if !bus.name_has_owner(service().into()).await? {
        if !activatable(&bus).await? {
            return Ok(Verdict::Absent);
        }
        bus.start_service_by_name(service(), 0).await?;
    }
    // Asked by its unique name, so the answer comes from the connection whose uid was checked.
    let owner = bus.get_name_owner(service().into()).await?;
    let uid = bus
        .get_connection_unix_user(BusName::from(owner.clone().into_inner()))
        .await?;
    if uid != 0 && uid != own_uid {
        return Err(PolkitError::Untrusted(uid));
    }
    let subject = (
        "system-bus-name",
        HashMap::from([("name", Value::from(sender))]),
    );
    let flags = if interactive {
        ALLOW_USER_INTERACTION
    } else {
        0
    };
    let (authorized, challenge, _) = AuthorityProxy::builder(conn)
        .destination(owner.into_inner())?
        .build()
        .await?
        .check_authorization(&subject, action.id(), HashMap::new(), flags, "")
        .await?;
    Ok(if authorized {
        Verdict::Allowed
    } else {
        Verdict::Denied { challenge }
    })
}
