//! The agent as a Windows service, through the Service Control Manager
//! (SCM): `custody-agent service install|uninstall|start|stop`, and
//! `service run`, which is what the SCM starts.
//!
//! The installed service runs `custody-agent.exe service run --config
//! FILE` as LocalSystem, starts automatically at boot and is restarted by
//! the SCM when it fails. A stop (`service stop`, `sc stop`, the Services
//! console) or the system shutting down is the same graceful shutdown as
//! SIGTERM on Linux: sources flush their open segments, the committer
//! makes them durable and writes the checkpoint, the shipper ships for up
//! to `shutdown_grace_ms`.
//!
//! A service has no console: its log goes to `STATE_DIR\agent.log`, and
//! `custody-agent status` reads `STATE_DIR\status.json` as on Linux.
// `define_windows_service!` expands to the `extern "system"` entry point the
// SCM calls, which the crate implements with `unsafe` code.
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use windows_service::service::{
    ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept,
    ServiceErrorControl, ServiceExitCode, ServiceFailureActions, ServiceFailureResetPeriod,
    ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
use windows_service::{define_windows_service, service_dispatcher};

use crate::cli::{ConfigArgs, LogFormat};

/// The service's name in the SCM (`sc query custody-agent`).
pub const SERVICE_NAME: &str = "custody-agent";
const DISPLAY_NAME: &str = "custody agent (log evidence)";
const DESCRIPTION: &str = "Keeps this host's logs as tamper-evident evidence: segments, hashes, \
    chains, signs and ships them to a create-only store.";
const SERVICE_TYPE: ServiceType = ServiceType::OWN_PROCESS;
/// The agent's own log when it runs as a service, in the state directory.
pub const SERVICE_LOG: &str = "agent.log";
/// The SCM's win32 error when `StartServiceCtrlDispatcher` is called by a
/// process it did not start.
const ERROR_FAILED_SERVICE_CONTROLLER_CONNECT: i32 = 1063;
const ERROR_SERVICE_DOES_NOT_EXIST: i32 = 1060;
const ERROR_SERVICE_NOT_ACTIVE: i32 = 1062;

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Register the service with the SCM (automatic start, LocalSystem, restart on failure).
    Install(InstallArgs),
    /// Stop the service if it runs and remove it from the SCM.
    Uninstall,
    /// Start the installed service and wait until it runs.
    Start,
    /// Stop the service (a graceful shutdown: flush, checkpoint, ship) and wait until it has stopped.
    Stop,
    /// What the SCM runs; not for use from a console (use `custody-agent run` there).
    #[command(hide = true)]
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The configuration file the service runs with (checked now; its absolute path is registered).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Register it without starting it at boot (start it with `service start`).
    #[arg(long)]
    pub manual: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

/// Runs a `service` subcommand; returns the exit code.
pub fn command(command: ServiceCommand, verbose: u8, log_format: LogFormat) -> anyhow::Result<u8> {
    match command {
        ServiceCommand::Install(args) => install(&args),
        ServiceCommand::Uninstall => uninstall(),
        ServiceCommand::Start => start(),
        ServiceCommand::Stop => stop(),
        ServiceCommand::Run(args) => dispatch(args, verbose, log_format),
    }
    .map(|()| crate::cli::EXIT_OK)
}

fn manager(access: ServiceManagerAccess) -> anyhow::Result<ServiceManager> {
    ServiceManager::local_computer(None::<&str>, access).context(
        "cannot open the Service Control Manager; run this from an elevated prompt (Run as administrator)",
    )
}

/// The win32 error code inside a windows-service error, if any.
fn win32_code(e: &windows_service::Error) -> Option<i32> {
    match e {
        windows_service::Error::Winapi(io) => io.raw_os_error(),
        _ => None,
    }
}

fn install(args: &InstallArgs) -> anyhow::Result<()> {
    let cwd = std::env::current_dir().context("cannot read the working directory")?;
    let config_path = cwd.join(&args.config);
    // The service must not fail at boot for a reason visible now.
    let config = ConfigArgs {
        config: Some(config_path.clone()),
        ..ConfigArgs::default()
    }
    .checked()
    .with_context(|| {
        format!(
            "{} is not a usable configuration; fix it (custody-agent check-config --config {}) and install again",
            config_path.display(),
            config_path.display()
        )
    })?;
    crate::platform::create_private_dir(&config.state_dir).with_context(|| {
        format!(
            "cannot create the state directory {}",
            config.state_dir.display()
        )
    })?;
    let exe = std::env::current_exe().context("cannot find this program's own path")?;
    let info = ServiceInfo {
        name: SERVICE_NAME.into(),
        display_name: DISPLAY_NAME.into(),
        service_type: SERVICE_TYPE,
        start_type: if args.manual {
            ServiceStartType::OnDemand
        } else {
            ServiceStartType::AutoStart
        },
        error_control: ServiceErrorControl::Normal,
        executable_path: exe.clone(),
        launch_arguments: vec![
            "service".into(),
            "run".into(),
            "--config".into(),
            config_path.clone().into_os_string(),
        ],
        dependencies: vec![],
        // LocalSystem: reads every log file and the Security event log.
        account_name: None,
        account_password: None,
    };
    let scm = manager(ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE)?;
    let service = scm
        .create_service(
            &info,
            ServiceAccess::CHANGE_CONFIG | ServiceAccess::QUERY_STATUS,
        )
        .map_err(|e| match win32_code(&e) {
            // ERROR_SERVICE_EXISTS
            Some(1073) => anyhow::anyhow!(
                "a service named {SERVICE_NAME} is already installed; to change its configuration file run \
                 `custody-agent service uninstall` first"
            ),
            _ => anyhow::Error::new(e).context(format!("cannot create the service {SERVICE_NAME}")),
        })?;
    service
        .set_description(DESCRIPTION)
        .context("cannot set the service's description")?;
    // Restart after 10 s, 30 s, then every 60 s; the count resets after a
    // day without failures. Checkpoint and spool are crash-safe, so a
    // restart loses nothing.
    let restart = |secs| ServiceAction {
        action_type: ServiceActionType::Restart,
        delay: Duration::from_secs(secs),
    };
    let actions = ServiceFailureActions {
        reset_period: ServiceFailureResetPeriod::After(Duration::from_secs(86_400)),
        reboot_msg: None,
        command: None,
        actions: Some(vec![restart(10), restart(30), restart(60)]),
    };
    if let Err(e) = service
        .update_failure_actions(actions)
        .and_then(|()| service.set_failure_actions_on_non_crash_failures(true))
    {
        eprintln!(
            "warning: the service is installed, but the SCM refused its restart-on-failure settings ({:#}); \
             set them in the Services console (Recovery tab) or with `sc failure {SERVICE_NAME} reset= 86400 \
             actions= restart/10000/restart/30000/restart/60000`",
            anyhow::Error::new(e)
        );
    }
    println!(
        "installed service {SERVICE_NAME}: {} service run --config {}",
        exe.display(),
        config_path.display()
    );
    println!(
        "start it with `custody-agent service start`; its log is {}",
        config.state_dir.join(SERVICE_LOG).display()
    );
    Ok(())
}

fn open(access: ServiceAccess) -> anyhow::Result<windows_service::service::Service> {
    let scm = manager(ServiceManagerAccess::CONNECT)?;
    scm.open_service(SERVICE_NAME, access)
        .map_err(|e| match win32_code(&e) {
            Some(ERROR_SERVICE_DOES_NOT_EXIST) => anyhow::anyhow!(
                "the service {SERVICE_NAME} is not installed; install it with \
                 `custody-agent service install --config FILE`"
            ),
            _ => anyhow::Error::new(e).context(format!("cannot open the service {SERVICE_NAME}")),
        })
}

/// Polls the service's state until it is `want` or `timeout` passes.
fn wait_for(
    service: &windows_service::service::Service,
    want: ServiceState,
    timeout: Duration,
) -> anyhow::Result<ServiceStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        let status = service
            .query_status()
            .context("cannot query the service's state")?;
        if status.current_state == want {
            return Ok(status);
        }
        if want == ServiceState::Running && status.current_state == ServiceState::Stopped {
            bail!(
                "the service stopped right after starting (exit code {:?}); see its log in the state directory \
                 (agent.log) and run `custody-agent check-config --config FILE`",
                status.exit_code
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "the service is still {:?} after {} s (wanted {want:?})",
                status.current_state,
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn start() -> anyhow::Result<()> {
    let service = open(ServiceAccess::START | ServiceAccess::QUERY_STATUS)?;
    if service.query_status()?.current_state == ServiceState::Running {
        println!("{SERVICE_NAME} is already running");
        return Ok(());
    }
    service
        .start::<OsString>(&[])
        .context("the SCM refused to start the service")?;
    wait_for(&service, ServiceState::Running, Duration::from_secs(60))?;
    println!("{SERVICE_NAME} is running");
    Ok(())
}

fn stop_service(service: &windows_service::service::Service) -> anyhow::Result<()> {
    match service.stop() {
        Ok(_) => {}
        Err(e) if win32_code(&e) == Some(ERROR_SERVICE_NOT_ACTIVE) => return Ok(()),
        Err(e) => return Err(anyhow::Error::new(e).context("the SCM refused to stop the service")),
    }
    // Shutdown flushes, checkpoints and ships for up to shutdown_grace_ms
    // (10 s by default): allow for more.
    wait_for(service, ServiceState::Stopped, Duration::from_secs(120))?;
    Ok(())
}

fn stop() -> anyhow::Result<()> {
    let service = open(ServiceAccess::STOP | ServiceAccess::QUERY_STATUS)?;
    stop_service(&service)?;
    println!("{SERVICE_NAME} is stopped");
    Ok(())
}

fn uninstall() -> anyhow::Result<()> {
    let service = open(ServiceAccess::STOP | ServiceAccess::QUERY_STATUS | ServiceAccess::DELETE)?;
    stop_service(&service)?;
    service
        .delete()
        .context("the SCM refused to delete the service")?;
    println!(
        "removed service {SERVICE_NAME}; the state directory (host key, checkpoint, spool) is kept: \
         delete it yourself once its spool is empty"
    );
    Ok(())
}

// ---- running under the SCM -------------------------------------------------

/// What `service run` was given, for the service's main function, which
/// the SCM calls on its own thread with arguments of its own.
struct Launch {
    config: PathBuf,
    verbose: u8,
    log_format: LogFormat,
}

static LAUNCH: OnceLock<Launch> = OnceLock::new();

define_windows_service!(ffi_service_main, service_main);

/// Hands the process to the SCM; returns when the service has stopped.
fn dispatch(args: RunArgs, verbose: u8, log_format: LogFormat) -> anyhow::Result<()> {
    let _ = LAUNCH.set(Launch {
        config: args.config,
        verbose,
        log_format,
    });
    match service_dispatcher::start(SERVICE_NAME, ffi_service_main) {
        Ok(()) => Ok(()),
        Err(e) if win32_code(&e) == Some(ERROR_FAILED_SERVICE_CONTROLLER_CONNECT) => bail!(
            "`service run` is what the Service Control Manager starts; from a console use \
             `custody-agent run --config FILE` (or `custody-agent service start`)"
        ),
        Err(e) => {
            Err(anyhow::Error::new(e).context("cannot connect to the Service Control Manager"))
        }
    }
}

fn service_main(_arguments: Vec<OsString>) {
    // Errors have nowhere else to go: they are in the log (once it is
    // open) and in the exit code the SCM records (`sc query custody-agent`).
    let _ = run_service();
}

fn status(
    state: ServiceState,
    accept: ServiceControlAccept,
    exit: u32,
    wait: Duration,
) -> ServiceStatus {
    ServiceStatus {
        service_type: SERVICE_TYPE,
        current_state: state,
        controls_accepted: accept,
        exit_code: if exit == 0 {
            ServiceExitCode::Win32(0)
        } else {
            ServiceExitCode::ServiceSpecific(exit)
        },
        checkpoint: 0,
        wait_hint: wait,
        process_id: None,
    }
}

/// Exit codes the SCM records for a failed service (service-specific).
const EXIT_BAD_CONFIG: u32 = 2;
const EXIT_FAILED: u32 = 1;

fn run_service() -> anyhow::Result<()> {
    let stop = Arc::new(tokio::sync::Notify::new());
    let stop_for_handler = stop.clone();
    let handler = move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown | ServiceControl::Preshutdown => {
            // notify_one keeps the request if the agent is still starting.
            stop_for_handler.notify_one();
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let handle = service_control_handler::register(SERVICE_NAME, handler)?;
    handle.set_service_status(status(
        ServiceState::StartPending,
        ServiceControlAccept::empty(),
        0,
        Duration::from_secs(30),
    ))?;
    let Some(launch) = LAUNCH.get() else {
        handle.set_service_status(status(
            ServiceState::Stopped,
            ServiceControlAccept::empty(),
            EXIT_FAILED,
            Duration::ZERO,
        ))?;
        bail!("service started without its launch arguments");
    };
    let config = match (ConfigArgs {
        config: Some(launch.config.clone()),
        ..ConfigArgs::default()
    })
    .checked()
    {
        Ok(c) => c,
        Err(e) => {
            // No state directory known: nowhere to log; the exit code says it.
            handle.set_service_status(status(
                ServiceState::Stopped,
                ServiceControlAccept::empty(),
                EXIT_BAD_CONFIG,
                Duration::ZERO,
            ))?;
            return Err(e);
        }
    };
    // Without its own log the agent still runs: the evidence matters more,
    // and `custody-agent status` still shows what it does.
    let _ = init_file_logging(&config.state_dir, launch.verbose, launch.log_format);
    let grace = config.shutdown_grace;
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|rt| {
            rt.block_on(async {
                let running = handle;
                running.set_service_status(status(
                    ServiceState::Running,
                    ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN,
                    0,
                    Duration::ZERO,
                ))?;
                let shutdown = async move {
                    stop.notified().await;
                    tracing::info!(
                        "service stop requested by the Service Control Manager, shutting down"
                    );
                    // Tell the SCM how long the flush may take.
                    let _ = running.set_service_status(status(
                        ServiceState::StopPending,
                        ServiceControlAccept::empty(),
                        0,
                        grace + Duration::from_secs(30),
                    ));
                };
                crate::run::run(config, shutdown).await
            })
        });
    let exit = match &result {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("the agent stopped with an error: {e:#}");
            EXIT_FAILED
        }
    };
    handle.set_service_status(status(
        ServiceState::Stopped,
        ServiceControlAccept::empty(),
        exit,
        Duration::ZERO,
    ))?;
    result
}

/// The service's log: appended to `STATE_DIR\agent.log`.
fn init_file_logging(state_dir: &Path, verbose: u8, format: LogFormat) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    crate::platform::create_private_dir(state_dir)?;
    let path = state_dir.join(SERVICE_LOG);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("cannot install the log: {e}"))
}
