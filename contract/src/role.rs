//! A node's role in its cluster, on its own so that both the node spec and
//! the Kubernetes settings it holds can name it without importing each other.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    ControlPlane,
    Worker,
}
