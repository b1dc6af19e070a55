//! TSO off on a link through ethtool's generic netlink family
//! (`ETHTOOL_MSG_FEATURES_SET`), what `ethtool -K LINK tso off` sends, in
//! this process: starting `ethtool` cost more under TCG than the request.
//!
//! Written on netlink-packet-generic's framing and family lookup because no
//! crate sets ethtool features: the `ethtool` crate (0.3) only reads them,
//! and the ioctl (`ETHTOOL_SFEATURES`) needs unsafe code kina-init does not
//! carry. Attribute numbers are from Linux's
//! `include/uapi/linux/ethtool_netlink_generated.h` (6.18; stable ABI since
//! 5.6); the request is answered as in `net/ethtool/features.c`,
//! `ethnl_set_features`.

use netlink_packet_core::{
    DecodeError, Emitable, NLA_F_NESTED, NLM_F_ACK, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
    Nla, NlaBuffer, NlasIterator, ParseableParametrized,
};
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::{GenlFamily, GenlHeader, GenlMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_GENERIC};

const ETHTOOL_GENL_NAME: &str = "ethtool";
const ETHTOOL_GENL_VERSION: u8 = 1;
const ETHTOOL_MSG_FEATURES_SET: u8 = 12;
const ETHTOOL_MSG_FEATURES_SET_REPLY: u8 = 12;
const ETHTOOL_A_HEADER_DEV_NAME: u16 = 2;
const ETHTOOL_A_HEADER_FLAGS: u16 = 3;
const ETHTOOL_FLAG_COMPACT_BITSETS: u32 = 1;
const ETHTOOL_A_FEATURES_HEADER: u16 = 1;
const ETHTOOL_A_FEATURES_WANTED: u16 = 3;
const ETHTOOL_A_BITSET_BITS: u16 = 3;
const ETHTOOL_A_BITSET_MASK: u16 = 5;
const ETHTOOL_A_BITSET_BITS_BIT: u16 = 1;
const ETHTOOL_A_BITSET_BIT_NAME: u16 = 2;

/// The features ethtool's `tso` names (`off_flag_def` in ethtool's
/// `ethtool.c`: `tx-tcp*-segmentation`) that every kernel since 4.x knows;
/// a name the running kernel does not know would fail the whole request.
const TSO_FEATURES: [&str; 4] = [
    "tx-tcp-segmentation",
    "tx-tcp-ecn-segmentation",
    "tx-tcp-mangleid-segmentation",
    "tx-tcp6-segmentation",
];

/// What the kernel did with the request.
#[derive(Debug, PartialEq, Eq)]
pub enum TsoOutcome {
    Off,
    /// Some TSO feature stayed on: the device does not let it change.
    Fixed,
}

/// Why TSO could not be set; `Unavailable` means the kernel has no ethtool
/// netlink (`CONFIG_ETHTOOL_NETLINK` unset), where only the ioctl works.
#[derive(Debug)]
pub enum TsoError {
    Unavailable(String),
    Failed(String),
}

/// One netlink attribute of the request.
enum Attr {
    U32(u16, u32),
    Str(u16, String),
    Nested(u16, Vec<Attr>),
}

impl Nla for Attr {
    fn value_len(&self) -> usize {
        match self {
            Attr::U32(..) => 4,
            Attr::Str(_, s) => s.len() + 1,
            Attr::Nested(_, inner) => inner.as_slice().buffer_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Attr::U32(k, _) | Attr::Str(k, _) => *k,
            Attr::Nested(k, _) => *k | NLA_F_NESTED,
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Attr::U32(_, v) => buffer[..4].copy_from_slice(&v.to_ne_bytes()),
            Attr::Str(_, s) => {
                buffer[..s.len()].copy_from_slice(s.as_bytes());
                buffer[s.len()] = 0;
            }
            Attr::Nested(_, inner) => inner.as_slice().emit(buffer),
        }
    }
}

/// An ethtool generic netlink message: its command and raw attributes.
#[derive(Debug)]
struct EthtoolMessage {
    family_id: u16,
    cmd: u8,
    attributes: Vec<u8>,
}

impl GenlFamily for EthtoolMessage {
    fn family_name() -> &'static str {
        ETHTOOL_GENL_NAME
    }

    fn family_id(&self) -> u16 {
        self.family_id
    }

    fn command(&self) -> u8 {
        self.cmd
    }

    fn version(&self) -> u8 {
        ETHTOOL_GENL_VERSION
    }
}

impl Emitable for EthtoolMessage {
    fn buffer_len(&self) -> usize {
        self.attributes.len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        buffer[..self.attributes.len()].copy_from_slice(&self.attributes);
    }
}

impl ParseableParametrized<[u8], GenlHeader> for EthtoolMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        Ok(Self {
            family_id: 0,
            cmd: header.cmd,
            attributes: buf.to_vec(),
        })
    }
}

/// The request `ethtool -K LINK tso off` makes: the TSO features in the
/// WANTED bitset without a VALUE flag (off), no NOMASK (every other feature
/// as it is), replies in compact form.
fn features_set_attributes(link: &str) -> Vec<u8> {
    let bits = TSO_FEATURES
        .iter()
        .map(|name| {
            Attr::Nested(
                ETHTOOL_A_BITSET_BITS_BIT,
                vec![Attr::Str(ETHTOOL_A_BITSET_BIT_NAME, (*name).to_string())],
            )
        })
        .collect();
    let attrs = [
        Attr::Nested(
            ETHTOOL_A_FEATURES_HEADER,
            vec![
                Attr::Str(ETHTOOL_A_HEADER_DEV_NAME, link.to_string()),
                Attr::U32(ETHTOOL_A_HEADER_FLAGS, ETHTOOL_FLAG_COMPACT_BITSETS),
            ],
        ),
        Attr::Nested(
            ETHTOOL_A_FEATURES_WANTED,
            vec![Attr::Nested(ETHTOOL_A_BITSET_BITS, bits)],
        ),
    ];
    let mut out = vec![0; attrs.as_slice().buffer_len()];
    attrs.as_slice().emit(&mut out);
    out
}

/// Whether a FEATURES_SET reply says a requested feature did not take: its
/// WANTED bitset's mask holds the requested bits whose new state differs
/// from the request (`wanted_diff_mask` in `ethnl_set_features`).
fn reply_has_unapplied(attributes: &[u8]) -> Result<bool, String> {
    let find = |buf: &[u8], kind: u16| -> Result<Option<Vec<u8>>, String> {
        for nla in NlasIterator::new(buf) {
            let nla: NlaBuffer<&[u8]> = nla.map_err(|e| format!("malformed reply: {e}"))?;
            if nla.kind() == kind {
                return Ok(Some(nla.value().to_vec()));
            }
        }
        Ok(None)
    };
    let Some(wanted) = find(attributes, ETHTOOL_A_FEATURES_WANTED)? else {
        return Ok(false);
    };
    Ok(find(&wanted, ETHTOOL_A_BITSET_MASK)?.is_some_and(|mask| mask.iter().any(|b| *b != 0)))
}

fn send<T>(socket: &Socket, mut message: NetlinkMessage<T>) -> Result<(), String>
where
    T: netlink_packet_core::NetlinkSerializable + std::fmt::Debug,
{
    message.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    message.finalize();
    let mut buf = vec![0; message.buffer_len()];
    message.serialize(&mut buf);
    socket
        .send(&buf, 0)
        .map(drop)
        .map_err(|e| format!("sending to generic netlink: {e}"))
}

/// Reads replies until the kernel's ACK, giving each payload to `each`; an
/// error answer becomes `Err((errno, text))`.
fn receive<T>(socket: &Socket, mut each: impl FnMut(T)) -> Result<(), (i32, String)>
where
    T: netlink_packet_core::NetlinkDeserializable + std::fmt::Debug,
{
    let mut buf = vec![0; 16384];
    loop {
        let n = socket
            .recv(&mut &mut buf[..], 0)
            .map_err(|e| (0, format!("reading generic netlink: {e}")))?;
        let mut offset = 0;
        while offset < n {
            let message = NetlinkMessage::<T>::deserialize(&buf[offset..n])
                .map_err(|e| (0, format!("malformed netlink reply: {e}")))?;
            let len = message.header.length as usize;
            match message.payload {
                NetlinkPayload::Error(e) if e.code.is_none() => return Ok(()),
                NetlinkPayload::Error(e) => return Err((-e.raw_code(), e.to_io().to_string())),
                NetlinkPayload::Done(_) => return Ok(()),
                NetlinkPayload::InnerMessage(inner) => each(inner),
                _ => {}
            }
            if len == 0 {
                return Err((0, "a netlink reply of length 0".into()));
            }
            // Messages in one datagram start at 4-byte boundaries
            // (NLMSG_ALIGN); the length does not count the padding.
            offset += (len + 3) & !3;
        }
    }
}

/// The id the kernel gave the ethtool family.
fn ethtool_family(socket: &Socket) -> Result<u16, TsoError> {
    let request = NetlinkMessage::from(GenlMessage::from_payload(GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas: vec![GenlCtrlAttrs::FamilyName(ETHTOOL_GENL_NAME.into())],
    }));
    send(socket, request).map_err(TsoError::Failed)?;
    let mut id = None;
    receive::<GenlMessage<GenlCtrl>>(socket, |reply| {
        for nla in &reply.payload.nlas {
            if let GenlCtrlAttrs::FamilyId(found) = nla {
                id = Some(*found);
            }
        }
    })
    .map_err(|(errno, text)| {
        if errno == nix::errno::Errno::ENOENT as i32 {
            TsoError::Unavailable(format!("no ethtool netlink family ({text})"))
        } else {
            TsoError::Failed(format!("looking up the ethtool netlink family: {text}"))
        }
    })?;
    id.ok_or_else(|| TsoError::Failed("the ethtool family lookup named no id".into()))
}

/// Turns TSO off on `link`.
pub fn tso_off(link: &str) -> Result<TsoOutcome, TsoError> {
    let mut socket = Socket::new(NETLINK_GENERIC)
        .map_err(|e| TsoError::Unavailable(format!("opening a generic netlink socket: {e}")))?;
    socket
        .bind_auto()
        .and_then(|_| socket.connect(&SocketAddr::new(0, 0)))
        .map_err(|e| TsoError::Failed(format!("binding a generic netlink socket: {e}")))?;
    let family_id = ethtool_family(&socket)?;
    let mut request = GenlMessage::from_payload(EthtoolMessage {
        family_id,
        cmd: ETHTOOL_MSG_FEATURES_SET,
        attributes: features_set_attributes(link),
    });
    request.set_resolved_family_id(family_id);
    send(&socket, NetlinkMessage::from(request)).map_err(TsoError::Failed)?;
    let mut unapplied = Ok(false);
    receive::<GenlMessage<EthtoolMessage>>(&socket, |reply| {
        if reply.payload.cmd == ETHTOOL_MSG_FEATURES_SET_REPLY {
            unapplied = reply_has_unapplied(&reply.payload.attributes);
        }
    })
    .map_err(|(_, text)| TsoError::Failed(format!("ethtool FEATURES_SET on {link}: {text}")))?;
    match unapplied.map_err(TsoError::Failed)? {
        false => Ok(TsoOutcome::Off),
        true => Ok(TsoOutcome::Fixed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_names_each_tso_feature_without_a_value_and_asks_for_compact_replies() {
        let attrs = features_set_attributes("eth0");
        let top: Vec<NlaBuffer<&[u8]>> = NlasIterator::new(&attrs[..])
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(top.len(), 2);
        // NlaBuffer::kind drops the flag; the nested ones carry it on the wire.
        assert!(top.iter().all(|nla| nla.nested_flag()));
        assert_eq!(top[0].kind(), ETHTOOL_A_FEATURES_HEADER);
        let header = top[0].value();
        assert!(header.windows(5).any(|w| w == b"eth0\0"));
        assert_eq!(top[1].kind(), ETHTOOL_A_FEATURES_WANTED);
        let wanted: Vec<NlaBuffer<&[u8]>> = NlasIterator::new(top[1].value())
            .collect::<Result<_, _>>()
            .unwrap();
        // Only BITS: no NOMASK (other features stay), no VALUE flags (off).
        assert_eq!(wanted.len(), 1);
        assert_eq!(wanted[0].kind(), ETHTOOL_A_BITSET_BITS);
        let bits: Vec<NlaBuffer<&[u8]>> = NlasIterator::new(wanted[0].value())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(bits.len(), TSO_FEATURES.len());
        for (bit, name) in bits.iter().zip(TSO_FEATURES) {
            let inner: Vec<NlaBuffer<&[u8]>> = NlasIterator::new(bit.value())
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(inner.len(), 1, "only the name");
            assert_eq!(inner[0].kind(), ETHTOOL_A_BITSET_BIT_NAME);
            assert_eq!(inner[0].value(), format!("{name}\0").as_bytes());
        }
    }

    /// A raw attribute, padded to 4 bytes, as the kernel writes one.
    fn raw_nla(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out
    }

    #[test]
    fn a_reply_with_a_nonzero_wanted_mask_means_a_feature_stayed() {
        let reply = |mask: &[u8]| {
            raw_nla(
                ETHTOOL_A_FEATURES_WANTED | NLA_F_NESTED,
                &raw_nla(ETHTOOL_A_BITSET_MASK, mask),
            )
        };
        assert!(reply_has_unapplied(&reply(&[0, 0, 1, 0])).unwrap());
        assert!(!reply_has_unapplied(&reply(&[0, 0, 0, 0])).unwrap());
        assert!(!reply_has_unapplied(&[]).unwrap());
    }
}
