//! The MQTT connection of a device: client options (mutual TLS with the configured trust
//! policy, last will, packet limits), the device's topics, and why a connection failed.

use std::time::Duration;

use iotsec_broker::topic;
use iotsec_tls::{ClientTls, Rejection};
use rumqttc::{
    AsyncClient, ConnectionError, EventLoop, LastWill, MqttOptions, QoS, TlsConfiguration,
    Transport,
};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::reading::OFFLINE_WILL;

/// Largest MQTT packet sent or accepted (the ingest refuses messages above 64 KiB).
pub const MAX_PACKET: usize = 64 * 1024 + 1024;

/// The topics of one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// `devices/<id>/telemetry`.
    pub telemetry: String,
    /// `devices/<id>/status`.
    pub status: String,
    /// `devices/<id>/commands/ack`.
    pub ack: String,
    /// `devices/<id>/commands/#`.
    pub commands: String,
    /// `devices/<id>/ota`: signed OTA reports.
    pub ota: String,
    /// `devices/<id>/commands/ota`: update notices and report acks from the server.
    pub ota_command: String,
}

impl Topics {
    /// The topics of device `id`.
    pub fn new(id: &str) -> Self {
        Topics {
            telemetry: topic::telemetry(id),
            status: topic::status(id),
            ack: topic::ack(id),
            commands: format!("devices/{id}/commands/#"),
            ota: topic::ota(id),
            ota_command: topic::ota_command(id),
        }
    }
}

/// What the client options should include.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Will {
    /// The agent: an unsigned `{"state":"offline"}` on the status topic if the connection
    /// dies without a DISCONNECT.
    Offline,
    /// `device check`: no will (it disconnects cleanly, and must not mark a running agent
    /// offline).
    None,
}

/// Builds the MQTT client and its event loop for `config`, using `tls` (whose
/// [`iotsec_tls::VerifyLog`] then describes this connection's handshakes).
pub(crate) fn client(
    config: &Config,
    tls: &ClientTls,
    client_id: String,
    will: Will,
    keep_alive: Duration,
    request_capacity: usize,
) -> Result<(AsyncClient, EventLoop)> {
    let mut options = MqttOptions::new(client_id, (config.broker.host.clone(), config.broker.port));
    let keep_alive = u16::try_from(keep_alive.as_secs())
        .unwrap_or(u16::MAX)
        .max(5);
    options
        .set_keep_alive(keep_alive)
        .set_clean_session(true)
        .set_max_packet_size(MAX_PACKET, MAX_PACKET)
        .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls.config(),
        )));
    if will == Will::Offline {
        options.set_last_will(LastWill::new(
            topic::status(config.id.as_str()),
            OFFLINE_WILL.to_vec(),
            QoS::AtLeastOnce,
            false,
        ));
    }
    AsyncClient::builder(options)
        .capacity(request_capacity)
        .try_build()
        .map_err(|e| Error::Mqtt {
            reason: e.to_string(),
        })
}

/// Why a connection attempt failed or a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The TLS handshake was refused, by us (pin mismatch, unknown CA, name mismatch, ...)
    /// or by the broker (our certificate: unknown CA, revoked, expired, missing).
    Tls(Rejection),
    /// The broker accepted TLS but refused the MQTT CONNECT.
    Refused {
        /// The CONNACK return code.
        code: String,
    },
    /// Anything else: connection refused, host unreachable, DNS, timeouts, a dropped
    /// connection.
    Network {
        /// rumqttc's description.
        reason: String,
    },
}

impl Failure {
    /// Classifies a rumqttc error, consulting the verifier's log when the TLS error was
    /// flattened on its way up.
    pub fn of(error: &ConnectionError, tls: &ClientTls) -> Failure {
        if let Some(rejection) = Rejection::find(error) {
            return Failure::Tls(rejection);
        }
        match error {
            ConnectionError::ConnectionRefused(code) => Failure::Refused {
                code: format!("{code:?}"),
            },
            // The log is only consulted for TLS errors: after a plain TCP failure it would
            // still hold an earlier handshake's verdict.
            ConnectionError::Tls(_) => match tls.last_rejection() {
                Some(rejection) => Failure::Tls(rejection),
                None => Failure::Network {
                    reason: error.to_string(),
                },
            },
            other => Failure::Network {
                reason: other.to_string(),
            },
        }
    }

    /// True when the broker refused this device's certificate (revoked, unknown CA, ...).
    pub fn is_certificate_refused(&self) -> bool {
        matches!(self, Failure::Tls(Rejection::CertificateRefused { .. }))
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Tls(Rejection::CertificateRefused { alert }) => write!(
                f,
                "the broker refused this device's certificate (TLS alert {alert}): revoked, \
                 expired or issued by another CA"
            ),
            Failure::Tls(rejection) => write!(f, "TLS: {rejection}"),
            Failure::Refused { code } => {
                write!(f, "the broker refused the MQTT connection: {code}")
            }
            Failure::Network { reason } => write!(f, "broker unreachable: {reason}"),
        }
    }
}
