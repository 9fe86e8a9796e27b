//! `device check`: connect once with the configured trust policy and identity, and report
//! either success (the server certificate, the policy, the CONNACK) or exactly why not.

use std::time::Duration;

use iotsec_tls::{PeerCertificate, PolicyKind};
use rumqttc::{Event, Packet};

use crate::config::{BrokerAddr, Config, ConfigWarning};
use crate::error::Result;
use crate::link::{self, Failure, Will};

/// The result of one connection attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// Where it connected.
    pub broker: BrokerAddr,
    /// The trust policy used.
    pub policy: PolicyKind,
    /// Configuration warnings (single SPKI pin, readable key files, ...).
    pub warnings: Vec<ConfigWarning>,
    /// The certificate the server presented, if the handshake got that far.
    pub server: Option<PeerCertificate>,
    /// What happened.
    pub outcome: CheckOutcome,
}

/// How the attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// TLS and MQTT accepted (CONNACK 0).
    Connected {
        /// The broker's `session present` flag.
        session_present: bool,
    },
    /// It failed; see [`Failure`].
    Failed(Failure),
    /// Nothing conclusive within the timeout.
    TimedOut(Duration),
}

impl CheckReport {
    /// True when the device can connect.
    pub fn is_ok(&self) -> bool {
        matches!(self.outcome, CheckOutcome::Connected { .. })
    }
}

/// Connects once and reports. The MQTT client id is `<id>-check`, so a running agent with
/// the same identity is not disconnected by the check, and no last will is set.
///
/// # Errors
/// Only for an unusable configuration ([`crate::Error::Tls`], [`crate::Error::Mqtt`]); every
/// connection outcome is a [`CheckReport`].
pub async fn check(config: &Config, timeout: Duration) -> Result<CheckReport> {
    let tls = config.client_tls()?;
    let (client, mut eventloop) = link::client(
        config,
        &tls,
        format!("{}-check", config.id),
        Will::None,
        Duration::from_secs(30),
        16,
    )?;
    let attempt = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    return CheckOutcome::Connected {
                        session_present: ack.session_present,
                    };
                }
                Ok(_) => {}
                Err(e) => return CheckOutcome::Failed(Failure::of(&e, &tls)),
            }
        }
    };
    let outcome = tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or(CheckOutcome::TimedOut(timeout));
    if matches!(outcome, CheckOutcome::Connected { .. }) {
        // A clean DISCONNECT, so the broker logs an orderly goodbye.
        let _ = client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while eventloop.poll().await.is_ok() {}
        })
        .await;
    }
    Ok(CheckReport {
        broker: config.broker.clone(),
        policy: config.policy.kind(),
        warnings: config.warnings.clone(),
        server: tls.last_peer(),
        outcome,
    })
}
