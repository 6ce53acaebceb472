//! One query, answered: from the directory, or by forwarding it.
//!
//! The protocol is hickory's (`hickory-proto`: parsing, names, records,
//! EDNS); the rules are Docker's embedded DNS server's (REFERENCE §1.9):
//! A and AAAA for containers' names in rotating order, PTR for their
//! addresses, an empty answer for other types of a known name (Docker
//! forwards those; a container's name never leaves the host here), and
//! everything else forwarded. Local answers over UDP are cut to 512 bytes,
//! or to the size the asker's EDNS allows, with the TC bit set.

use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, Query, ResponseCode},
    rr::{
        DNSClass, Name, RData, Record, RecordType,
        rdata::{A, AAAA, PTR},
    },
};

use super::directory::{Addresses, Asker, Directory};

/// TTL of local answers, Docker's (`respTTL`).
pub const LOCAL_TTL: u32 = 600;
/// The most a UDP answer may hold without EDNS (RFC 1035).
pub const UDP_PLAIN: usize = 512;
/// The most a UDP answer may hold whatever the asker's EDNS says: what
/// the resolver advertises itself.
pub const UDP_MAX: u16 = 4096;

/// How a query came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What to do with one query.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Send this answer.
    Answer(Vec<u8>),
    /// Not a container's: ask these servers, in order (`servfail` if none
    /// answers).
    Forward(Vec<super::directory::Upstream>),
    /// Not a query: no answer (a response sent to the resolver, a packet
    /// too short for a header).
    Drop,
}

/// Answers `query` from `asker`'s view of `dir`; `turn` picks where a
/// multi-address answer starts (the caller counts queries).
pub fn answer(
    query: &[u8],
    transport: Transport,
    dir: &Directory,
    asker: &Asker,
    turn: usize,
) -> Outcome {
    let msg = match Message::from_vec(query) {
        Ok(msg) => msg,
        Err(_) => return header_error(query, ResponseCode::FormErr),
    };
    if msg.metadata.message_type != MessageType::Query {
        return Outcome::Drop;
    }
    if msg.metadata.op_code != OpCode::Query {
        return reply(&msg, ResponseCode::NotImp, Vec::new(), transport);
    }
    let [q] = msg.queries.as_slice() else {
        return reply(&msg, ResponseCode::FormErr, Vec::new(), transport);
    };
    if q.query_class() != DNSClass::IN {
        return forward(asker);
    }
    let name = q.name().to_ascii();
    if q.query_type() == RecordType::PTR {
        let ip = q
            .name()
            .parse_arpa_name()
            .ok()
            .filter(|net| net.prefix_len() == net.max_prefix_len())
            .map(|net| net.addr());
        return match ip.and_then(|ip| dir.reverse(asker, ip)) {
            Some(target) => match Name::from_ascii(format!("{target}.")) {
                Ok(target) => {
                    let record =
                        Record::from_rdata(q.name().clone(), LOCAL_TTL, RData::PTR(PTR(target)));
                    reply(&msg, ResponseCode::NoError, vec![record], transport)
                }
                Err(_) => forward(asker),
            },
            None => forward(asker),
        };
    }
    let Some(found) = dir.resolve(asker, &name) else {
        if asker.user_ndots && q.name().num_labels() == 1 {
            // Not forwarded: the stub is to try its search domains.
            return reply(&msg, ResponseCode::NoError, Vec::new(), transport);
        }
        return forward(asker);
    };
    let records = records(q, &found, turn);
    reply(&msg, ResponseCode::NoError, records, transport)
}

/// The A or AAAA records of `found` for `q`, rotated by `turn`; none for
/// other types (an empty NOERROR answer, as Docker's for MX).
fn records(q: &Query, found: &Addresses, turn: usize) -> Vec<Record> {
    let rdata: Vec<RData> = match q.query_type() {
        RecordType::A => found.v4.iter().map(|ip| RData::A(A(*ip))).collect(),
        RecordType::AAAA => found.v6.iter().map(|ip| RData::AAAA(AAAA(*ip))).collect(),
        _ => Vec::new(),
    };
    let n = rdata.len();
    (0..n)
        .map(|i| Record::from_rdata(q.name().clone(), LOCAL_TTL, rdata[(i + turn) % n].clone()))
        .collect()
}

fn forward(asker: &Asker) -> Outcome {
    Outcome::Forward(asker.upstreams.clone())
}

/// The answer to `query` with `code` and `answers`, cut to fit a UDP
/// datagram the asker accepts.
fn reply(
    query: &Message,
    code: ResponseCode,
    answers: Vec<Record>,
    transport: Transport,
) -> Outcome {
    let mut msg = Message::response(query.metadata.id, query.metadata.op_code);
    msg.metadata.recursion_desired = query.metadata.recursion_desired;
    msg.metadata.checking_disabled = query.metadata.checking_disabled;
    msg.metadata.recursion_available = true;
    msg.metadata.authoritative = code == ResponseCode::NoError;
    msg.metadata.response_code = code;
    msg.add_queries(query.queries.iter().cloned());
    let limit = match (transport, &query.edns) {
        (Transport::Tcp, _) => usize::from(u16::MAX),
        (Transport::Udp, None) => UDP_PLAIN,
        (Transport::Udp, Some(edns)) => usize::from(edns.max_payload().clamp(512, UDP_MAX)),
    };
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(UDP_MAX);
        msg.set_edns(edns);
    }
    let mut answers = answers;
    loop {
        msg.answers.clone_from(&answers);
        match msg.to_vec() {
            Ok(bytes) if bytes.len() <= limit => return Outcome::Answer(bytes),
            Ok(_) if !answers.is_empty() => {
                answers.pop();
                msg.metadata.truncation = true;
            }
            // Even the question does not fit, or it cannot be written.
            _ => return header_error(&query_header(query), ResponseCode::ServFail),
        }
    }
}

/// The 12 header bytes of `query` (for an error answer when nothing else
/// can be written).
fn query_header(query: &Message) -> [u8; 12] {
    let mut header = [0u8; 12];
    header[..2].copy_from_slice(&query.metadata.id.to_be_bytes());
    header[2] = u8::from(query.metadata.op_code) << 3;
    header
}

/// An answer of `code` built from the raw header of `query` (for what
/// hickory cannot parse): its ID, opcode and RD bit, no sections. `Drop`
/// if there is no header, or it is a response's.
pub fn header_error(query: &[u8], code: ResponseCode) -> Outcome {
    let Some(header) = query.get(..12) else {
        return Outcome::Drop;
    };
    if header[2] & 0x80 != 0 {
        return Outcome::Drop;
    }
    let mut out = vec![0u8; 12];
    out[..2].copy_from_slice(&header[..2]);
    // QR set, the opcode and RD kept; RA set; the code in the low bits.
    out[2] = 0x80 | (header[2] & 0x79);
    out[3] = 0x80 | (u16::from(code) as u8 & 0x0f);
    Outcome::Answer(out)
}

/// SERVFAIL for `query` (no upstream answered).
pub fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    match Message::from_vec(query) {
        Ok(msg) => match reply(&msg, ResponseCode::ServFail, Vec::new(), Transport::Tcp) {
            Outcome::Answer(bytes) => Some(bytes),
            _ => None,
        },
        Err(_) => match header_error(query, ResponseCode::ServFail) {
            Outcome::Answer(bytes) => Some(bytes),
            _ => None,
        },
    }
}

/// Whether an upstream's `answer` sends the query on to the next server
/// (Docker's failover: SERVFAIL and REFUSED).
pub fn fails_over(answer: &[u8]) -> bool {
    answer.get(3).is_some_and(|b| matches!(b & 0x0f, 2 | 5))
}

#[cfg(test)]
mod tests;
