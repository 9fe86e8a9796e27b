//! `iotsec token`: API tokens for the HTTPS API and dashboard (create, list, revoke).
//!
//! A token is shown once, at creation; the token file (`[web] tokens`, default `tokens.json`
//! next to server.toml, mode 0600) keeps only its SHA-256. A running `iotsec serve` re-reads
//! the file at the next request, so `revoke` takes effect at once.

use std::path::PathBuf;

use clap::Subcommand;
use iotsec_server::ServerConfig;
use iotsec_web::token::{self, Role};

use crate::Outcome;

/// Arguments of `iotsec token`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RoleArg {
    /// Reads the fleet, telemetry, rejections and the audit report.
    Viewer,
    /// Also revokes devices.
    Admin,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a token and print it (only this once).
    Create {
        /// What the token may do.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// A label for the token (shown by `list` and in the server's logs with its id).
        #[arg(long, default_value = "")]
        name: String,
        /// Server configuration (its [web] tokens names the token file).
        #[arg(long, default_value = "server.toml")]
        config: PathBuf,
    },
    /// List tokens (ids, names, roles; never the tokens).
    List {
        /// Server configuration.
        #[arg(long, default_value = "server.toml")]
        config: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id; a running server refuses it from the next request.
    Revoke {
        /// Token id (from `create` or `list`).
        id: String,
        /// Server configuration.
        #[arg(long, default_value = "server.toml")]
        config: PathBuf,
    },
}

fn token_file(config: &std::path::Path) -> anyhow::Result<PathBuf> {
    let config = ServerConfig::load(config)?;
    Ok(iotsec_web::config::tokens_path(&config))
}

/// Runs `iotsec token`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    match args.command {
        Command::Create { role, name, config } => {
            let path = token_file(&config)?;
            let role = match role {
                RoleArg::Viewer => Role::Viewer,
                RoleArg::Admin => Role::Admin,
            };
            let (entry, secret) = token::create(&path, role, &name)?;
            eprintln!(
                "created token {} ({}, \"{}\") in {}; it is shown only this once:",
                entry.id,
                entry.role.name(),
                entry.name,
                path.display()
            );
            println!("{}", secret.expose());
        }
        Command::List { config, json } => {
            let path = token_file(&config)?;
            let tokens = token::list(&path)?;
            if json {
                let v: Vec<_> = tokens
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "id": t.id, "name": t.name, "role": t.role, "created": t.created
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{:<10} {:<8} {:<26} NAME", "ID", "ROLE", "CREATED (UTC)");
                for t in tokens {
                    println!(
                        "{:<10} {:<8} {:<26} {}",
                        t.id,
                        t.role.name(),
                        t.created,
                        t.name
                    );
                }
            }
        }
        Command::Revoke { id, config } => {
            let path = token_file(&config)?;
            if token::revoke(&path, &id)? {
                println!("revoked token {id}: refused from the next request");
            } else {
                anyhow::bail!("no token {id} in {}", path.display());
            }
        }
    }
    Ok(Outcome::Ok)
}
