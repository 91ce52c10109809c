//! Tests of Consul's snapshot archive: a round trip, every kind of damage refused, the limits
//! kept while unpacking (a gzip bomb stops at the limit), and bare cairn snapshots still read.

use std::io::{Read, Write};

use openraft::{LogId, StoredMembership};

use super::*;

fn header(rows: u64) -> SnapshotHeader {
    SnapshotHeader {
        last_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(3, 1), 42)),
        membership: StoredMembership::default(),
        snapshot_id: "3-42-1700000000000".into(),
        row_count: rows,
    }
}

fn rows() -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![(b"k1".to_vec(), b"v1".to_vec()), (b"k2".to_vec(), vec![7u8; 1000])]
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
    out
}

/// A gzipped tar of exactly these files, in this order.
fn archive_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut entry = tar::Header::new_ustar();
        entry.set_path(name).unwrap();
        entry.set_size(data.len() as u64);
        entry.set_mode(0o600);
        entry.set_cksum();
        builder.append(&entry, *data).unwrap();
    }
    gzip(&builder.into_inner().unwrap())
}

/// The three files of a good archive, unpacked.
fn files_of(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
    let tar_bytes = gunzip(archive);
    let mut reader = tar::Archive::new(tar_bytes.as_slice());
    reader
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().display().to_string();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            (name, data)
        })
        .collect()
}

#[test]
fn an_archive_round_trips_with_consul_metadata() {
    let state = snapshot::encode(&header(2), &rows());
    let archive = write(&header(2), &state, 1_700_000_000);
    assert_eq!(archive[..2], GZIP_MAGIC, "gzip magic");
    let files = files_of(&archive);
    let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["meta.json", "state.bin", "SHA256SUMS"]);
    let meta: serde_json::Value = serde_json::from_slice(&files[0].1).unwrap();
    assert_eq!(meta["ID"], "3-42-1700000000000");
    assert_eq!(meta["Index"], 42);
    assert_eq!(meta["Term"], 3);
    assert_eq!(meta["Version"], 1);
    assert_eq!(meta["Size"], state.len());
    assert_eq!(files[1].1, state);
    let sums = String::from_utf8(files[2].1.clone()).unwrap();
    assert!(sums.contains(&format!("{}  state.bin", sha256_hex(&state))), "{sums}");

    let opened = open(&archive).expect("opens");
    assert_eq!(opened.rows, rows());
    assert_eq!(opened.header, header(2));
    assert_eq!(opened.meta.map(|m| (m.index, m.term, m.size)), Some((42, 3, state.len() as u64)));
}

#[test]
fn a_bare_cairn_snapshot_still_opens() {
    let state = snapshot::encode(&header(2), &rows());
    let opened = open(&state).expect("the format GET /v1/snapshot sent before");
    assert!(opened.meta.is_none());
    assert_eq!(opened.rows, rows());
    assert!(matches!(open(b"neither gzip nor cairn"), Err(ArchiveError::NotASnapshot)));
}

#[test]
fn damaged_archives_are_refused() {
    let state = snapshot::encode(&header(2), &rows());
    let files = files_of(&write(&header(2), &state, 0));
    let (meta, sums) = (files[0].1.as_slice(), files[2].1.as_slice());
    let mut tampered = state.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x01;

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("tampered state", archive_of(&[("meta.json", meta), ("state.bin", &tampered), ("SHA256SUMS", sums)]), "hash check failed for \"state.bin\""),
        ("no sums", archive_of(&[("meta.json", meta), ("state.bin", &state)]), "file missing for \"SHA256SUMS\""),
        ("no state", archive_of(&[("meta.json", meta), ("SHA256SUMS", sums)]), "file missing for \"state.bin\""),
        ("extra file", archive_of(&[("meta.json", meta), ("evil", b"x"), ("state.bin", &state), ("SHA256SUMS", sums)]), "unexpected file \"evil\""),
        ("twice", archive_of(&[("meta.json", meta), ("meta.json", meta), ("state.bin", &state)]), "appears twice"),
        ("sums for another file", archive_of(&[("meta.json", meta), ("state.bin", &state), ("SHA256SUMS", b"00  other\n")]), "list missing hash for \"other\""),
    ];
    for (what, archive, expected) in cases {
        let error = open(&archive).expect_err(what).to_string();
        assert!(error.contains(expected), "{what}: {error}");
    }
    let archive = write(&header(2), &state, 0);
    for cut in [10, archive.len() / 2, archive.len() - 9] {
        assert!(open(&archive[..cut]).is_err(), "truncated at {cut}");
    }
    let consul_state = b"\x00consul's msgpack FSM stream";
    let consul_like = write(&header(0), consul_state, 0);
    assert!(matches!(open(&consul_like), Err(ArchiveError::State(_))), "a state that is not cairn's is refused");
}

#[test]
fn unpacking_stops_at_the_limits() {
    // A gzip bomb: a few KiB that unpack to more than the whole archive may.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1024 * 1024];
    for _ in 0..(SNAPSHOT_UNPACKED_BYTES_MAX / zeros.len() + 2) {
        encoder.write_all(&zeros).unwrap();
    }
    let bomb = encoder.finish().unwrap();
    assert!(bomb.len() < 64 * 1024, "the bomb is small: {} bytes", bomb.len());
    assert!(matches!(open(&bomb), Err(ArchiveError::TooLarge { .. })), "{:?}", open(&bomb).err());

    // A state.bin over its own limit, well packed.
    let big = vec![0u8; SNAPSHOT_STATE_BYTES_MAX + 1];
    let archive = archive_of(&[("meta.json", b"{}"), ("state.bin", &big)]);
    assert!(matches!(open(&archive), Err(ArchiveError::TooLarge { what: "state.bin", .. })), "{:?}", open(&archive).err());
}
