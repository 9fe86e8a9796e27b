//! One module per `iotsec` subcommand.

pub mod audit;
pub mod broker;
pub mod device;
pub mod device_agent;
pub mod fleet;
pub mod foreground;
pub mod fw;
pub mod msg;
pub mod pki;
pub mod scan;
pub mod serve;
pub mod token;
pub mod up;
