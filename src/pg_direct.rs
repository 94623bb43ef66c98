//! A session with a db container over TCP from this host, to its address on the
//! project's private network (gemctl runs on the engine's host, which reaches its
//! bridge networks, as the services' health checks do), with the credentials of
//! the db's environment. Where a `docker exec` + `psql` costs a process in the
//! container and a round trip through the engine per statement, this costs one
//! connection; the base backup holds its backup in such a session
//! (`stream::base_backup_into`). No TLS: the connection stays on the host's
//! bridge. The password is handed to the client library only.

use std::time::Duration;

use crate::copy::DbCredentials;
use crate::engine::Engine;
use crate::spec::Spec;

/// How long a connection may take before gemctl goes through `docker exec`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A connected session; the connection's task ends with the client.
pub struct Session {
    /// The client.
    pub client: tokio_postgres::Client,
    /// Where it connected (`address:5432`).
    pub address: String,
}

/// Connects to `container` (a running db of `spec`'s) as `application_name`.
/// `Err` says why it could not (no address, refused, authentication…), for the
/// caller to say which way it went instead.
pub async fn connect<E: Engine>(
    engine: &E,
    spec: &Spec,
    container: &str,
    creds: &DbCredentials,
    application_name: &str,
) -> Result<Session, String> {
    let network = spec.network_name();
    let host = match engine.container_address(container, &network).await {
        Ok(Some(host)) if !host.is_empty() => host,
        Ok(_) => return Err(format!("{container} has no address on {network}")),
        Err(e) => return Err(format!("the address of {container}: {e}")),
    };
    let mut config = tokio_postgres::Config::new();
    config
        .host(&host)
        .port(5432)
        .user(&creds.user)
        .dbname(&creds.database)
        .application_name(application_name)
        .connect_timeout(CONNECT_TIMEOUT);
    if let Some(password) = &creds.password {
        config.password(password);
    }
    let address = format!("{host}:5432");
    let connected = tokio::time::timeout(
        CONNECT_TIMEOUT + Duration::from_secs(1),
        config.connect(tokio_postgres::NoTls),
    )
    .await;
    let (client, connection) = match connected {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return Err(format!("connecting to {container} at {address}: {e}")),
        Err(_) => {
            return Err(format!(
                "connecting to {container} at {address}: no answer in {}s",
                CONNECT_TIMEOUT.as_secs() + 1
            ));
        }
    };
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("the session with the db ended: {e}");
        }
    });
    Ok(Session { client, address })
}

/// A database error's own message (`ERROR: …` with its detail), else the
/// client's.
pub fn message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{}: {} ({detail})", db.severity(), db.message()),
            None => format!("{}: {}", db.severity(), db.message()),
        },
        None => e.to_string(),
    }
}
