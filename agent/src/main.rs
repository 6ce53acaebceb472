//! `netagent`: the daemon and its CLI (flags in `netagent::cli`).

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use netagent::{
    cli::{Cli, Command},
    client,
    datapath::bpf::PinDir,
    output,
    server::{self, DaemonConfig},
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netagent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Daemon(args) => {
            init_logging();
            server::run(DaemonConfig {
                state_dir: args.state_dir,
                bpffs: args.bpffs,
                socket: cli.socket,
                ifaces: args.ifaces,
                xdp_mode: args.xdp_mode,
                hold_ports: args.hold_ports,
                masquerade_ports: args.masquerade_ports,
                cgroup: match args.cgroup.as_deref() {
                    Some("none") => server::CgroupChoice::None,
                    Some(path) => server::CgroupChoice::Path(path.into()),
                    None => server::CgroupChoice::Root,
                },
                dns: args.dns,
                resolv_conf: args.resolv_conf,
                icc: args.icc,
            })
        }
        Command::Teardown { bpffs, state_dir } => {
            server::teardown_all(&PinDir::new(bpffs), &state_dir)
                .context("tearing down the datapath")
        }
        command => {
            let request = netagent::cli::request(command)?;
            let response = client::call(&cli.socket, &request)?;
            let style = match (cli.json, cli.format) {
                (true, _) => output::Style::Json,
                (false, Some(template)) => output::Style::Template(template),
                (false, None) => output::Style::Text,
            };
            let rendered = output::render(&request, &response, &style)?;
            for warning in rendered.warnings {
                eprintln!("WARNING: {warning}");
            }
            print!("{}", rendered.stdout);
            Ok(())
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NETAGENT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
