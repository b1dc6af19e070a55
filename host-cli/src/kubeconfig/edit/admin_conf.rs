//! Reading the credentials out of kubeadm's `admin.conf`.
//!
//! admin.conf is itself a kubeconfig, so it is read through the same checked
//! view of the top level ([`inspect`]) as the files kina edits. It has a
//! file of its own because it only reads: it shares that view with the
//! editing code and nothing else.

use super::top::{Slot, inspect};
use crate::kubeconfig::yaml::{self, Document, Kind, Node};

/// Reads kubeadm's admin.conf: the current context's (or only context's)
/// cluster CA, server, client certificate and key, all embedded as data.
pub(in crate::kubeconfig) struct AdminConf {
    pub ca_data: String,
    pub client_cert_data: String,
    pub client_key_data: String,
}

pub(in crate::kubeconfig) fn admin_conf(text: &str) -> Result<AdminConf, String> {
    let root = match yaml::parse(text)? {
        Document::Empty => return Err("it is empty".to_string()),
        Document::Root(root) => root,
    };
    let top = inspect(&root)?;
    let [clusters, contexts, users] = &top.slots;
    let current = top
        .current
        .and_then(|(_, v)| v.scalar())
        .filter(|c| !c.is_empty());
    let context = match current {
        Some(name) => contexts
            .items
            .iter()
            .find(|(_, n)| *n == Some(name))
            .map(|(node, _)| *node)
            .ok_or_else(|| "its current-context names no context in it".to_string())?,
        None => match contexts.items.as_slice() {
            [(node, _)] => *node,
            _ => return Err("it has no current-context and not exactly one context".to_string()),
        },
    };
    let context = body(context, "context", "contexts")?;
    let cluster_name = string(context, "cluster", "the context's cluster")?;
    let user_name = string(context, "user", "the context's user")?;
    let cluster = body(find(clusters, &cluster_name)?, "cluster", "clusters")?;
    let user = body(find(users, &user_name)?, "user", "users")?;
    Ok(AdminConf {
        ca_data: string(
            cluster,
            "certificate-authority-data",
            "the CA must be embedded",
        )?,
        client_cert_data: string(
            user,
            "client-certificate-data",
            "the client certificate must be embedded",
        )?,
        client_key_data: string(user, "client-key-data", "the client key must be embedded")?,
    })
}

/// The mapping under `key` of an item of `list`, e.g. a context's `context`.
fn body<'n>(item: &'n Node, key: &str, list: &str) -> Result<&'n Node, String> {
    match item.get(key) {
        Some(node) if matches!(node.kind, Kind::Map { .. }) => Ok(node),
        _ => Err(format!("a `{list}` item has no `{key}` mapping")),
    }
}

/// The non-empty string under `key`; `what` says why it must be there.
fn string(map: &Node, key: &str, what: &str) -> Result<String, String> {
    map.get(key)
        .and_then(Node::scalar)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .ok_or_else(|| format!("it has no `{key}` ({what})"))
}

/// The item of `slot` named `name`.
fn find<'n>(slot: &Slot<'n>, name: &str) -> Result<&'n Node, String> {
    slot.items
        .iter()
        .find(|(_, n)| *n == Some(name))
        .map(|(node, _)| *node)
        .ok_or_else(|| format!("its context names a missing `{}` item", slot.list.key()))
}
