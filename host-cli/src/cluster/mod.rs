//! Clusters, whichever provider runs their nodes: the plan `kina up`
//! makes (`plan`), the record it keeps (`record`), and the verbs as
//! ordered steps (`up`, `lifecycle`) over the `Provider` seam, with one
//! wait loop and status reader (`wait`) and the kubeconfig glue
//! (`kubeconfig`), and what `up --dry-run` shows (`dry_run`). Nothing here
//! knows which provider it drives.

pub mod dry_run;
pub mod kubeconfig;
pub mod lifecycle;
pub mod plan;
pub mod progress;
pub mod record;
pub mod sequence;
pub mod up;
pub mod wait;

pub use plan::ClusterPlan;
pub use record::ClusterDir;
