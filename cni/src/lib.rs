//! Placeholder for `netagent-cni`, the CNI 1.1 plugin that container runtimes
//! invoke. It is deliberately empty: the plugin is built by its own issue,
//! and nothing here pretends to work before then. There is no binary, so a
//! runtime configured with `"type": "netagent-cni"` fails to find the plugin
//! rather than getting a result that did nothing.
