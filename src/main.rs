//! The `scim-sidecar` binary: a thin CLI over the library (serve, demo, check-config,
//! hash-token). Exit codes follow sysexits: 64 (`EX_USAGE`) for a bad command line or
//! configuration, 1 when the server cannot start or fails.

use std::io::Read as _;
#[cfg(feature = "demo")]
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use scim_sidecar::app::{self, StartupError};
use scim_sidecar::config::{self, Config};
use scim_sidecar::error::ErrorChain;
use scim_sidecar::telemetry;

/// The token `demo` accepts unless `--token` says otherwise. Public on purpose: the demo
/// serves an in-memory fake Zulip, never real data.
#[cfg(feature = "demo")]
const DEMO_TOKEN: &str = "demo-token-change-me-0123456789";

/// `EX_USAGE`: bad command line or configuration.
const EXIT_USAGE: u8 = 64;
/// The server could not start, or stopped on an error.
const EXIT_FAILURE: u8 = 1;

const AFTER_HELP: &str = "\
Exit codes:
  0   success (serve and demo: stopped by SIGTERM/SIGINT after draining)
  1   the server could not start or failed (e.g. cannot listen); the error chain is printed
  64  bad command line or invalid configuration; every problem is printed

Configuration: defaults < YAML file < SCIM_SIDECAR_* environment variables, `__` nesting
(SCIM_SIDECAR_REALMS__ACME__BEARER_TOKEN=...). Logs go to stderr; RUST_LOG sets the filter.";

/// SCIM 2.0 provisioning for Zulip: speaks SCIM to identity providers and Zulip's REST API
/// upstream.
#[derive(Debug, Parser)]
#[command(name = "scim-sidecar", version, about, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve SCIM for the configured realms until SIGTERM/SIGINT.
    #[command(after_help = AFTER_HELP)]
    Serve {
        #[command(flatten)]
        config: ConfigArg,
    },
    #[cfg(feature = "demo")]
    /// Serve SCIM in front of an in-memory fake Zulip seeded with sample users and groups
    /// (for trying out IdPs and the SCIM compliance testers; nothing is persisted).
    #[command(after_help = AFTER_HELP)]
    Demo {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Bearer token the demo accepts.
        #[arg(long, default_value = DEMO_TOKEN)]
        token: String,
    },
    /// Validate the configuration: print it with secrets redacted (JSON, stdout) and
    /// "configuration ok" (stderr), or every problem (stderr, exit 64). With --online, also
    /// reach each realm's Zulip (read-only) and report its version, the service account's
    /// standing and rate-limit headroom; any problem there exits 1, each named with its fix.
    #[command(after_help = AFTER_HELP)]
    CheckConfig {
        #[command(flatten)]
        config: ConfigArg,
        /// Also check each realm's Zulip (read-only calls).
        #[arg(long)]
        online: bool,
    },
    /// Print a new random bearer token and its SHA-256 digest (for `bearer_token_sha256`).
    #[command(after_help = AFTER_HELP)]
    GenToken,
    /// Read a bearer token from stdin and print its SHA-256 hex digest, for
    /// `bearer_token_sha256` (e.g. `printf %s "$TOKEN" | scim-sidecar hash-token`).
    #[command(after_help = AFTER_HELP)]
    HashToken,
}

#[derive(Debug, clap::Args)]
struct ConfigArg {
    /// YAML configuration file; if it does not exist, the environment alone must
    /// configure at least one realm.
    #[arg(long, env = "SCIM_SIDECAR_CONFIG", default_value = "sidecar.yaml")]
    config: PathBuf,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // `--help` and `--version` arrive here too, as non-errors.
            let code = if err.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Serve { config } => serve(&config.config),
        #[cfg(feature = "demo")]
        Command::Demo { listen, token } => demo(listen, token),
        Command::CheckConfig { config, online } => check_config(&config.config, online),
        Command::HashToken => hash_token(),
        Command::GenToken => gen_token(),
    }
}

fn serve(path: &Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(err) => return config_error(&err),
    };
    telemetry::init(config.log_format);
    run(app::serve(config, path))
}

#[cfg(feature = "demo")]
fn demo(listen: SocketAddr, token: String) -> ExitCode {
    if let Some(problem) = config::token_problem(&token) {
        eprintln!("error: --token: {problem}");
        return ExitCode::from(EXIT_USAGE);
    }
    telemetry::init(config::LogFormat::Pretty);
    run(scim_sidecar::demo::run(scim_sidecar::demo::DemoOptions { listen, token }))
}

/// Runs `server` on a multi-thread runtime; exit 1 with the error chain if it fails.
fn run(server: impl std::future::Future<Output = Result<(), StartupError>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            print_error_chain(&err);
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(server) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %ErrorChain(&err), "scim-sidecar stopped");
            print_error_chain(&err);
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn check_config(path: &Path, online: bool) -> ExitCode {
    match Config::load(path) {
        Ok(config) => match serde_json::to_string_pretty(&config.redacted()) {
            Ok(json) => {
                println!("{json}");
                eprintln!("configuration ok");
                if online {
                    return check_online(&config);
                }
                ExitCode::SUCCESS
            }
            Err(err) => {
                print_error_chain(&err);
                ExitCode::from(EXIT_FAILURE)
            }
        },
        Err(err) => config_error(&err),
    }
}

/// `check-config --online`: one line per fact and problem, per realm, on stderr.
fn check_online(config: &Config) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            print_error_chain(&err);
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let reports = runtime.block_on(scim_sidecar::online::check(config));
    let mut problems = 0;
    for report in &reports {
        for fact in &report.facts {
            eprintln!("realm {}: {fact}", report.realm);
        }
        for problem in &report.problems {
            eprintln!("realm {}: PROBLEM: {problem}", report.realm);
        }
        problems += report.problems.len();
    }
    if problems == 0 {
        eprintln!("online check ok ({} realm(s))", reports.len());
        ExitCode::SUCCESS
    } else {
        eprintln!("online check found {problems} problem(s)");
        ExitCode::from(EXIT_FAILURE)
    }
}

/// `gen-token`: 48 random letters and digits (285 bits) and their SHA-256 digest.
fn gen_token() -> ExitCode {
    use rand::Rng as _;
    let token: String =
        rand::rngs::OsRng.sample_iter(&rand::distributions::Alphanumeric).take(48).map(char::from).collect();
    println!("token:  {token}");
    println!("sha256: {}", hex::encode(config::token_digest(&token)));
    eprintln!("give the token to the IdP; put the sha256 in bearer_token_sha256 (or the token in a bearer_token_file)");
    ExitCode::SUCCESS
}

fn hash_token() -> ExitCode {
    let mut input = String::new();
    if let Err(err) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("error: cannot read the token from stdin: {err}");
        return ExitCode::from(EXIT_USAGE);
    }
    let token = config::trim_secret(&input);
    if token.contains('\n') {
        eprintln!("error: expected one token on stdin, found several lines");
        return ExitCode::from(EXIT_USAGE);
    }
    if let Some(problem) = config::token_problem(token) {
        eprintln!("error: {problem}");
        return ExitCode::from(EXIT_USAGE);
    }
    println!("{}", hex::encode(config::token_digest(token)));
    ExitCode::SUCCESS
}

fn config_error(err: &config::ConfigError) -> ExitCode {
    match err {
        config::ConfigError::Figment(err) => {
            // A figment error may hold several; print each on its own line.
            eprintln!("error: cannot load configuration:");
            for err in err.as_ref().clone() {
                eprintln!("  - {err}");
            }
        }
        config::ConfigError::Invalid(_) => eprintln!("error: {err}"),
    }
    ExitCode::from(EXIT_USAGE)
}

/// `error: outer: cause: root cause` on stderr.
fn print_error_chain(err: &dyn std::error::Error) {
    eprintln!("error: {}", ErrorChain(err));
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    #[cfg(feature = "demo")]
    fn subcommands_parse_with_their_defaults() {
        let cli = Cli::try_parse_from(["scim-sidecar", "demo"]).unwrap();
        let Command::Demo { listen, token } = cli.command else { panic!("demo expected") };
        assert_eq!(listen.to_string(), "127.0.0.1:8080");
        assert_eq!(token, DEMO_TOKEN);
        assert!(config::token_problem(DEMO_TOKEN).is_none());

        let cli = Cli::try_parse_from(["scim-sidecar", "check-config", "--config", "x.yaml"]).unwrap();
        assert!(
            matches!(cli.command, Command::CheckConfig { config, online: false } if config.config == Path::new("x.yaml"))
        );
        assert!(Cli::try_parse_from(["scim-sidecar", "hash-token"]).is_ok());
        assert!(Cli::try_parse_from(["scim-sidecar", "gen-token"]).is_ok());
        let cli = Cli::try_parse_from(["scim-sidecar", "check-config", "--online"]).unwrap();
        assert!(matches!(cli.command, Command::CheckConfig { online: true, .. }));
        assert!(Cli::try_parse_from(["scim-sidecar", "serve", "--bogus"]).is_err());
    }
}
