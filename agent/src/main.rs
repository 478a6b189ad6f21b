//! `custody-agent`: parses the command line, sets up logging and signal
//! handling, and hands over to the library. Exit codes: 0 ok, 1 failure (a
//! one-paragraph error naming the flag, key or path), 2 usage error (or
//! `status` without a status file).

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use custody_agent::cli::{
    self, Cli, Command, HoldCommand, KeyCommand, LogFormat, EXIT_FAILURE, EXIT_OK,
};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    #[cfg(windows)]
    if let Command::Service { command } = cli.command {
        // A service has no console: `service run` logs to a file instead.
        if !matches!(command, custody_agent::winservice::ServiceCommand::Run(_)) {
            init_logging(cli.verbose, cli.log_format);
        }
        return match custody_agent::winservice::command(command, cli.verbose, cli.log_format) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(EXIT_FAILURE)
            }
        };
    }
    init_logging(cli.verbose, cli.log_format);
    match dispatch(cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Run(args) => {
            let result = args.checked().and_then(|config| {
                runtime()?.block_on(async {
                    let shutdown = shutdown_signal()?;
                    custody_agent::run::run(config, shutdown).await?;
                    Ok(EXIT_OK)
                })
            });
            if let Err(e) = &result {
                // `systemctl status` shows why the unit failed.
                custody_agent::service::Notifier::from_env().status(&format!("failed: {e:#}"));
            }
            result
        }
        Command::CheckConfig(args) => cli::check_config(&args),
        Command::Status(args) => cli::status(&args, &pid_alive),
        Command::Key {
            command: KeyCommand::Show(args),
        } => cli::key_show(&args).map(|()| EXIT_OK),
        Command::Prune(args) => runtime()?.block_on(cli::prune(&args)).map(|()| EXIT_OK),
        Command::Hold {
            command: HoldCommand::Set(args),
        } => runtime()?
            .block_on(cli::hold(&args, true))
            .map(|()| EXIT_OK),
        Command::Snapshot(args) => runtime()?.block_on(cli::snapshot(&args)),
        Command::CustodyEvent(args) => cli::custody_event(&args),
        Command::Hold {
            command: HoldCommand::Release(args),
        } => runtime()?
            .block_on(cli::hold(&args, false))
            .map(|()| EXIT_OK),
        #[cfg(windows)]
        Command::Service { .. } => anyhow::bail!("`service` is handled before the other commands"),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Logs go to stderr (stdout is for command output). The default level is
/// info, raised by `-v`; `RUST_LOG` wins when set.
fn init_logging(verbose: u8, format: LogFormat) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Resolves on SIGTERM (systemd stop) or Ctrl-C. If a handler cannot be
/// installed the agent still runs; it logs why it cannot be stopped that way.
/// Installs the SIGTERM and SIGINT handlers at once (not when the future is
/// first polled, which is only after start-up), so a signal during start-up
/// is a clean shutdown rather than death by the default action.
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => tracing::info!("Ctrl-C (SIGINT) received, shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        }
    })
}

/// The console's stop requests on Windows (`custody-agent run` in a
/// console; the service is stopped through the SCM instead, see
/// `winservice`): Ctrl-C, Ctrl-Break, the console window closed, logoff or
/// shutdown. Installed at once, as on Unix.
#[cfg(windows)]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::windows::{ctrl_break, ctrl_c, ctrl_close, ctrl_shutdown};
    let mut c = ctrl_c().context("listening for Ctrl-C")?;
    let mut brk = ctrl_break().context("listening for Ctrl-Break")?;
    let mut close = ctrl_close().context("listening for the console closing")?;
    let mut shutdown = ctrl_shutdown().context("listening for system shutdown")?;
    Ok(async move {
        tokio::select! {
            _ = c.recv() => tracing::info!("Ctrl-C received, shutting down"),
            _ = brk.recv() => tracing::info!("Ctrl-Break received, shutting down"),
            _ = close.recv() => tracing::info!("console closed, shutting down"),
            _ = shutdown.recv() => tracing::info!("system shutdown, shutting down"),
        }
    })
}

/// Whether a process with this id exists: it can be opened for a query and
/// has not exited. Access denied means it exists but belongs to someone
/// else (the service runs as LocalSystem).
#[cfg(windows)]
fn pid_alive(pid: u32) -> bool {
    use windows_sys::Win32::Foundation::{CloseHandle, ERROR_ACCESS_DENIED, STILL_ACTIVE};
    use windows_sys::Win32::System::Threading::{
        GetExitCodeProcess, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
    };
    if pid == 0 {
        return false;
    }
    // SAFETY: OpenProcess takes plain values and returns a handle or null;
    // a non-null handle is closed exactly once below.
    let handle = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if handle.is_null() {
        return std::io::Error::last_os_error().raw_os_error() == Some(ERROR_ACCESS_DENIED as i32);
    }
    let mut code = 0u32;
    // SAFETY: `handle` is a valid process handle; `code` is writable.
    let ok = unsafe { GetExitCodeProcess(handle, &mut code) } != 0;
    // SAFETY: closes the handle opened above, once.
    unsafe { CloseHandle(handle) };
    ok && code == STILL_ACTIVE as u32
}

/// Whether a process with this id exists. `kill(pid, 0)` sends no signal; it
/// only checks existence and permission. EPERM means the process exists but
/// belongs to another user (status run by an operator, agent by root).
#[cfg(unix)]
fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        // 0 and negative ids address process groups, not one process.
        return false;
    }
    // SAFETY: kill with signal 0 has no effect on the target and touches no
    // memory of ours; any pid value is acceptable to the system call.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
