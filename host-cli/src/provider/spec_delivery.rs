//! The host's side of replacing a running node's spec
//! (`kina_contract::spec_delivery`): the spec goes through the provider's
//! exec to `kina-init replace-spec`, and the digest the node answers is
//! checked against that of the bytes sent, so `up` and `start` go on only
//! once the node holds exactly the spec kina means it to. One path for
//! every provider; QEMU's nodes run it for real in the tests, Apple's
//! through `container exec -i`.

use std::io::Read;
use std::time::Duration;

use anyhow::{Context, bail};
use kina_contract::node_spec::NodeSpec;
use kina_contract::spec_delivery::{REPLACE_SPEC_ARGV, digest};

use super::Provider;

/// How long a node may take to check, store and read back a spec (a few
/// KiB; the rest is exec's own start-up, slow only under QEMU's TCG).
const REPLACE_TIMEOUT: Duration = Duration::from_secs(60);

/// A spec as kina writes every spec, into a node or beside one.
pub fn encode(spec: &NodeSpec) -> anyhow::Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(spec)
        .with_context(|| format!("encoding node {}'s spec", spec.name))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Puts `bytes` (a spec, as [`encode`] makes it) in force in the running
/// node `node`, which checks that it is the spec's node; returns the
/// digest both sides agree on. A refusal, a failed exec or another digest
/// answered is an error naming the node; a node that refuses keeps the
/// spec it had.
pub fn replace_in<P: Provider + ?Sized>(
    provider: &P,
    node: &str,
    bytes: &[u8],
) -> anyhow::Result<String> {
    deliver(node, bytes, |input| {
        provider.exec(node, &REPLACE_SPEC_ARGV, input, REPLACE_TIMEOUT)
    })
}

/// [`replace_in`] of `spec`, encoded.
pub fn replace<P: Provider + ?Sized>(
    provider: &P,
    node: &str,
    spec: &NodeSpec,
) -> anyhow::Result<String> {
    replace_in(provider, node, &encode(spec)?)
}

/// Sends `bytes` through `exec` (which runs `REPLACE_SPEC_ARGV` in `node`
/// with its input and gives its output) and checks the answer.
fn deliver(
    node: &str,
    bytes: &[u8],
    exec: impl FnOnce(&mut dyn Read) -> anyhow::Result<Vec<u8>>,
) -> anyhow::Result<String> {
    let sent = digest(bytes);
    let mut input = bytes;
    let out = exec(&mut input)
        .with_context(|| format!("node {node} did not confirm its new spec ({sent})"))?;
    let answered = String::from_utf8_lossy(&out);
    let answered = answered.trim();
    if answered != sent {
        bail!(
            "node {node} answered `{answered}` for its new spec, but kina sent {sent}: the node \
             may hold another spec than kina's; run the command again"
        );
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_must_answer_the_digest_of_what_was_sent() {
        let spec = b"{\"version\":1}\n";
        let mut received = Vec::new();
        let ok = deliver("n1", spec, |input| {
            input.read_to_end(&mut received)?;
            Ok(format!("{}\n", digest(&received)).into_bytes())
        })
        .unwrap();
        assert_eq!(received, spec);
        assert_eq!(ok, digest(spec));

        let other = digest(b"something else");
        let err = deliver("n1", spec, |_| Ok(other.clone().into_bytes())).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("node n1 answered") && text.contains(&other),
            "{text}"
        );

        let err = deliver("n2", spec, |_| {
            Err(anyhow::anyhow!(
                "kina-init replace-spec: EOF while parsing; the spec in force is unchanged"
            ))
        })
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.starts_with("node n2 did not confirm its new spec (sha256:")
                && text.contains("the spec in force is unchanged"),
            "{text}"
        );
    }
}
