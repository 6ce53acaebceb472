//! Service discovery's requests: a container's resolv.conf, hosts file
//! and link variables as netagent makes them (`container resolv-conf`,
//! `container hosts`, `container env`), for runtimes that install them
//! themselves. The daemon writes the same files for `/run/netns/NAME`
//! namespaces (`dns::service`).

use crate::{
    agent::Agent,
    api::ContainerFile,
    datapath::Datapath,
    dns::{ResolverConfig, files},
    error::AgentError,
    host::Host,
    lookup,
};

impl<D: Datapath, H: Host> Agent<D, H> {
    /// The text of `file` for container `name` (name, ID or prefix).
    pub fn container_file(&self, name: &str, file: ContainerFile) -> Result<String, AgentError> {
        let container = lookup::container(&self.state, name)?;
        let unconfigured = ResolverConfig::default();
        let config = self.resolver.as_ref().map_or(&unconfigured, |r| r.config());
        Ok(match file {
            ContainerFile::ResolvConf => {
                files::resolv_conf(container, &config.host, &config.upstreams())
            }
            ContainerFile::Hosts => files::hosts(&self.state, container),
            ContainerFile::Env => container
                .links
                .iter()
                .flat_map(|l| l.env.iter())
                .map(|v| format!("{v}\n"))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests;
