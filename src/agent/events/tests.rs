//! Tests of the user-event wire format (pinned bytes), the filters, the ring and the index.

use super::*;

fn sample_event() -> FiredEvent {
    FiredEvent {
        id: EventId([0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0x4c, 0xde, 0x80, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07]),
        name: "deploy".into(),
        payload: b"v1".to_vec(),
        filters: EventFilters { node: "web".into(), service: "api".into(), tag: "v".into() },
        version: USER_EVENT_VERSION,
        ltime: 42,
    }
}

fn event_with_id(first_byte: u8) -> FiredEvent {
    let mut event = sample_event();
    event.id = EventId([first_byte; 16]);
    event
}

#[test]
fn encoding_is_pinned() {
    tracing::info!("format 1 is on the wire between agents: these bytes must never change");
    let expected: Vec<u8> = [
        &[EVENT_FORMAT_V1][..],
        &[0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0x4c, 0xde, 0x80, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07],
        &[6, b'd', b'e', b'p', b'l', b'o', b'y'],
        &[2, b'v', b'1'],
        &[3, b'w', b'e', b'b'],
        &[3, b'a', b'p', b'i'],
        &[1, b'v'],
        &[1],
    ]
    .concat();
    assert_eq!(encode(&sample_event()), expected);
}

#[test]
fn decoding_round_trips_and_takes_the_lamport_time_from_gossip() {
    let event = sample_event();
    let decoded = decode(&encode(&event), 42).expect("decodes");
    assert_eq!(decoded, event);
    assert_eq!(decode(&encode(&event), 9).expect("decodes").ltime, 9);
}

#[test]
fn hostile_bytes_are_errors_not_panics() {
    let good = encode(&sample_event());
    assert_eq!(decode(&[], 0), Err(DecodeError::Empty));
    assert_eq!(decode(&[2, 0, 0], 0), Err(DecodeError::UnknownFormat(2)));
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(matches!(decode(&trailing, 0), Err(DecodeError::Malformed(_))));
    for cut in 1..good.len() {
        assert!(matches!(decode(&good[..cut], 0), Err(DecodeError::Malformed(_))), "cut at {cut}");
    }
    let mut huge_length = vec![EVENT_FORMAT_V1];
    huge_length.extend([0u8; 16]);
    huge_length.extend([0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert!(matches!(decode(&huge_length, 0), Err(DecodeError::Malformed(_))));
    let mut bad_utf8 = vec![EVENT_FORMAT_V1];
    bad_utf8.extend([0u8; 16]);
    bad_utf8.extend([1, 0xff]);
    assert!(matches!(decode(&bad_utf8, 0), Err(DecodeError::Malformed(_))));
}

#[test]
fn event_id_prints_as_a_uuid_and_indexes_as_consul() {
    let id = sample_event().id;
    assert_eq!(id.to_string(), "01234567-89ab-4cde-8001-020304050607");
    tracing::info!("Consul's uuidToUint64: 0123456789ab4cde xor 8001020304050607");
    assert_eq!(id.index(), 0x0123_4567_89ab_4cde ^ 0x8001_0203_0405_0607);
    let random = EventId::random();
    let text = random.to_string();
    assert_eq!(text.len(), 36);
    assert_eq!(&text[14..15], "4", "version 4");
}

fn filters(node: &str, service: &str, tag: &str) -> EventFilters {
    EventFilters { node: node.into(), service: service.into(), tag: tag.into() }
}

fn passes(node: &str, service: &str, tag: &str, services: &[(&str, Vec<String>)]) -> bool {
    let compiled = compile_filters(&filters(node, service, tag)).expect("filters compile");
    accepts(&compiled, "web-1", services.iter().map(|(id, tags)| (*id, tags.as_slice())))
}

#[test]
fn filters_follow_consuls_should_process_user_event() {
    let services = [("mysql", vec!["primary".to_string(), "v2".to_string()]), ("redis-1", vec![])];
    assert!(passes("", "", "", &[]), "no filter: every agent");
    assert!(passes("web", "", "", &[]), "node regexes are unanchored, as Go's MatchString");
    assert!(passes("^web-[0-9]$", "", "", &[]));
    assert!(!passes("^db", "", "", &services));
    assert!(passes("", "sql", "", &services));
    assert!(!passes("", "sql", "", &[]), "a service filter needs a local service");
    assert!(passes("", "^redis", "", &services), "matched against the service ID");
    assert!(passes("", "mysql", "prim", &services));
    assert!(!passes("", "mysql", "secondary", &services));
    assert!(!passes("", "redis", "primary", &services), "the tag must belong to a matching service");
    assert!(!passes("db", "mysql", "", &services), "every filter must pass");
}

#[test]
fn bad_filters_are_refused_with_consuls_wording() {
    assert_eq!(compile_filters(&filters("", "", "v1")).err(), Some(FireError::TagWithoutService));
    let error = compile_filters(&filters("[", "", "")).expect_err("unclosed class");
    let text = error.to_string();
    assert!(text.starts_with("Invalid node filter: error parsing regexp: "), "{text}");
    assert!(!text.contains('\n'), "{text}");
    let error = compile_filters(&filters("", "(", "")).expect_err("unclosed group");
    assert!(error.to_string().starts_with("Invalid service filter: "), "{error}");
    let error = compile_filters(&filters("", "a", "*")).expect_err("bare repetition");
    assert!(error.to_string().starts_with("Invalid tag filter: "), "{error}");
    tracing::info!("a filter too long for any event is refused before compiling");
    let long = "a".repeat(EVENT_FILTER_BYTES_MAX + 1);
    let error = compile_filters(&filters(&long, "", "")).expect_err("too long");
    assert!(error.to_string().contains("longer than"), "{error}");
    tracing::info!("a short pattern that compiles to a huge program hits the size limit");
    let error = compile_filters(&filters(r"\w{1000}{1000}", "", "")).expect_err("too big");
    assert!(error.to_string().starts_with("Invalid node filter: "), "{error}");
}

#[test]
fn ring_keeps_the_last_256_oldest_first_and_skips_known_ids() {
    let mut ring = EventRing::default();
    assert!(ring.list().is_empty());
    assert!(ring.push(event_with_id(1)));
    assert!(!ring.push(event_with_id(1)), "an ID already kept is not kept twice");
    assert_eq!(ring.list().len(), 1);
    let mut ring = EventRing::default();
    for n in 0..(EVENT_RING_LEN + 10) {
        let mut event = sample_event();
        event.id = EventId((n as u128).to_be_bytes());
        event.ltime = n as u64;
        assert!(ring.push(event));
    }
    let kept = ring.list();
    assert_eq!(kept.len(), EVENT_RING_LEN);
    assert_eq!(kept.first().map(|e| e.ltime), Some(10), "the oldest are dropped first");
    assert_eq!(kept.last().map(|e| e.ltime), Some((EVENT_RING_LEN + 9) as u64));
    assert!(kept.windows(2).all(|pair| pair[0].ltime < pair[1].ltime), "oldest first");
}
