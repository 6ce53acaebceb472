use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::{
    op::{Edns, Message, Query, ResponseCode},
    rr::{Name, RData, RecordType},
};

use super::*;
use crate::dns::directory::tests::{container, endpoint, state};

fn query(name: &str, kind: RecordType) -> Message {
    let mut msg = Message::query();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from_ascii(name).expect("a name"), kind));
    msg
}

fn ask(dir: &Directory, asker: &str, msg: &Message, transport: Transport, turn: usize) -> Outcome {
    let asker = dir.asker(&asker.repeat(64)).expect("an asker");
    answer(&msg.to_vec().expect("encodes"), transport, dir, asker, turn)
}

fn answered(outcome: Outcome) -> Message {
    match outcome {
        Outcome::Answer(bytes) => Message::from_vec(&bytes).expect("a DNS message"),
        other => panic!("not answered locally: {other:?}"),
    }
}

fn v4s(msg: &Message) -> Vec<Ipv4Addr> {
    msg.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

/// `ip`'s reverse name (`3.0.1.10.in-addr.arpa.`).
fn arpa(ip: std::net::IpAddr) -> String {
    Name::from(ip).to_ascii()
}

fn upstreams() -> Vec<super::super::directory::Upstream> {
    vec![super::super::directory::Upstream::of_host(
        "192.0.2.53:53".parse().expect("addr"),
        true,
    )]
}

#[test]
fn a_and_aaaa_answers_rotate_and_echo_the_query() {
    let dir = Directory::build(&state(), &upstreams());
    let q = query("api.", RecordType::A);
    let first = answered(ask(&dir, "a", &q, Transport::Udp, 0));
    assert_eq!(first.metadata.id, q.metadata.id);
    assert_eq!(first.metadata.response_code, ResponseCode::NoError);
    assert!(first.metadata.recursion_desired && first.metadata.recursion_available);
    assert_eq!(first.queries, q.queries);
    assert_eq!(first.answers[0].ttl, LOCAL_TTL);
    assert_eq!(
        v4s(&first),
        [Ipv4Addr::new(10, 1, 0, 3), Ipv4Addr::new(10, 1, 0, 4)]
    );
    let next = answered(ask(&dir, "a", &q, Transport::Udp, 1));
    assert_eq!(
        v4s(&next),
        [Ipv4Addr::new(10, 1, 0, 4), Ipv4Addr::new(10, 1, 0, 3)]
    );
    let aaaa = answered(ask(
        &dir,
        "b",
        &query("WWW.", RecordType::AAAA),
        Transport::Udp,
        0,
    ));
    let v6: Vec<Ipv6Addr> = aaaa
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::AAAA(a) => Some(a.0),
            _ => None,
        })
        .collect();
    assert_eq!(v6, ["fd00::2".parse::<Ipv6Addr>().expect("v6")]);
}

#[test]
fn a_known_name_without_that_type_is_an_empty_answer_not_a_forward() {
    let dir = Directory::build(&state(), &upstreams());
    for kind in [RecordType::AAAA, RecordType::MX, RecordType::TXT] {
        let msg = answered(ask(&dir, "a", &query("api1.", kind), Transport::Udp, 0));
        assert_eq!(msg.metadata.response_code, ResponseCode::NoError, "{kind}");
        assert!(msg.answers.is_empty(), "{kind}");
    }
}

#[test]
fn other_names_are_forwarded_to_the_askers_upstreams() {
    let dir = Directory::build(&state(), &upstreams());
    for name in ["example.com.", "db.", "legacy."] {
        assert_eq!(
            ask(&dir, "a", &query(name, RecordType::A), Transport::Udp, 0),
            Outcome::Forward(upstreams()),
            "{name}"
        );
    }
    // db is on an internal network only: nowhere to forward.
    assert_eq!(
        ask(
            &dir,
            "d",
            &query("example.com.", RecordType::A),
            Transport::Udp,
            0
        ),
        Outcome::Forward(Vec::new())
    );
}

#[test]
fn with_a_users_ndots_an_unknown_single_label_is_answered_empty() {
    let mut state = state();
    state.containers[0].dns.options = vec!["ndots:2".into()];
    let dir = Directory::build(&state, &upstreams());
    let msg = answered(ask(
        &dir,
        "a",
        &query("nothere.", RecordType::A),
        Transport::Udp,
        0,
    ));
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert!(msg.answers.is_empty());
    // Two labels go up as before; and without the option, one does too.
    assert_eq!(
        ask(
            &dir,
            "a",
            &query("not.here.", RecordType::A),
            Transport::Udp,
            0
        ),
        Outcome::Forward(upstreams())
    );
    assert_eq!(
        ask(
            &dir,
            "b",
            &query("nothere.", RecordType::A),
            Transport::Udp,
            0
        ),
        Outcome::Forward(upstreams())
    );
}

#[test]
fn ptr_for_container_addresses_and_forward_for_others() {
    let dir = Directory::build(&state(), &upstreams());
    let name = arpa("10.1.0.3".parse().expect("ip"));
    assert_eq!(name, "3.0.1.10.in-addr.arpa.");
    let msg = answered(ask(
        &dir,
        "a",
        &query(&name, RecordType::PTR),
        Transport::Udp,
        0,
    ));
    match &msg.answers[0].data {
        RData::PTR(ptr) => assert_eq!(ptr.0.to_ascii(), "api1.front."),
        other => panic!("{other:?}"),
    }
    let name6 = arpa("fd00::2".parse().expect("ip"));
    let msg = answered(ask(
        &dir,
        "b",
        &query(&name6, RecordType::PTR),
        Transport::Udp,
        0,
    ));
    assert_eq!(msg.answers.len(), 1);
    let other = arpa("10.2.0.2".parse().expect("ip"));
    assert_eq!(
        ask(
            &dir,
            "a",
            &query(&other, RecordType::PTR),
            Transport::Udp,
            0
        ),
        Outcome::Forward(upstreams())
    );
}

#[test]
fn udp_answers_are_cut_to_fit_with_tc_and_tcp_ones_are_whole() {
    // 60 containers share one alias: 60 A records do not fit 512 bytes.
    let mut state = state();
    for i in 0..60u8 {
        state.containers.push(container(
            &format!("many{i}"),
            'f',
            vec![endpoint("front", [10, 1, 1, i], None, &["many"])],
        ));
    }
    let dir = Directory::build(&state, &upstreams());
    let q = query("many.", RecordType::A);
    let Outcome::Answer(bytes) = ask(&dir, "a", &q, Transport::Udp, 0) else {
        panic!("answered")
    };
    assert!(bytes.len() <= UDP_PLAIN, "{}", bytes.len());
    let msg = Message::from_vec(&bytes).expect("parses");
    assert!(msg.metadata.truncation);
    assert!(!msg.answers.is_empty() && msg.answers.len() < 60);
    // EDNS allows more; still cut, at its size.
    let mut edns_q = q.clone();
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    edns_q.set_edns(edns);
    let Outcome::Answer(bytes) = ask(&dir, "a", &edns_q, Transport::Udp, 0) else {
        panic!("answered")
    };
    let msg = Message::from_vec(&bytes).expect("parses");
    assert!(bytes.len() <= 1232 && bytes.len() > UDP_PLAIN);
    assert_eq!(msg.answers.len(), 60, "60 records fit 1232 bytes");
    assert!(msg.edns.is_some(), "an EDNS query gets OPT back");
    let msg = answered(ask(&dir, "a", &q, Transport::Tcp, 0));
    assert!(!msg.metadata.truncation);
    assert_eq!(msg.answers.len(), 60);
}

#[test]
fn malformed_input_gets_formerr_or_nothing() {
    let dir = Directory::build(&state(), &upstreams());
    let asker = dir.asker(&"a".repeat(64)).expect("web");
    // Too short for a header: nothing.
    assert_eq!(
        answer(b"\x12", Transport::Udp, &dir, asker, 0),
        Outcome::Drop
    );
    // A header and garbage: FORMERR with the ID.
    let mut junk = vec![0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    junk.extend_from_slice(&[0xff; 40]);
    let msg = answered(answer(&junk, Transport::Udp, &dir, asker, 0));
    assert_eq!(msg.metadata.id, 0xabcd);
    assert_eq!(msg.metadata.response_code, ResponseCode::FormErr);
    // A response sent to the resolver: never answered (no loops).
    let mut response = query("api.", RecordType::A);
    response.metadata.message_type = hickory_proto::op::MessageType::Response;
    let bytes = response.to_vec().expect("encodes");
    assert_eq!(
        answer(&bytes, Transport::Udp, &dir, asker, 0),
        Outcome::Drop
    );
    // Two questions: FORMERR.
    let mut two = query("api.", RecordType::A);
    two.add_query(Query::query(
        Name::from_ascii("web.").expect("name"),
        RecordType::A,
    ));
    let msg = answered(ask(&dir, "a", &two, Transport::Udp, 0));
    assert_eq!(msg.metadata.response_code, ResponseCode::FormErr);
    // Not a standard query (NOTIFY): NOTIMP.
    let mut notify = query("api.", RecordType::A);
    notify.metadata.op_code = hickory_proto::op::OpCode::Notify;
    let msg = answered(ask(&dir, "a", &notify, Transport::Udp, 0));
    assert_eq!(msg.metadata.response_code, ResponseCode::NotImp);
    // SERVFAIL for a query no upstream answered keeps its question.
    let q = query("example.com.", RecordType::A);
    let fail = Message::from_vec(&servfail(&q.to_vec().expect("encodes")).expect("an answer"))
        .expect("parses");
    assert_eq!(fail.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(fail.queries, q.queries);
    assert!(fails_over(&fail.to_vec().expect("encodes")));
}
