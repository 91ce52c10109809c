//! Backups: `GET /v1/snapshot` is Consul's gzipped tar (`meta.json`, `state.bin`,
//! `SHA256SUMS`); `cairn snapshot save|restore|inspect` against a real agent; damaged,
//! tampered and oversized archives are refused with a 4xx and change nothing; the bare cairn
//! snapshots saved before still restore; a backup restores into a fresh cluster.

use std::io::{Read, Write};
use std::time::Duration;

use crate::cluster_util::TestCluster;
use crate::util::{TestAgent, eventually};

/// The files of a gzipped tar, in order.
fn unpack(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut tar_bytes = Vec::new();
    flate2::read::GzDecoder::new(archive).read_to_end(&mut tar_bytes).expect("gzip");
    let mut reader = tar::Archive::new(tar_bytes.as_slice());
    let entries = reader.entries().expect("tar");
    entries
        .map(|entry| {
            let mut entry = entry.expect("tar entry");
            let name = entry.path().expect("path").display().to_string();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).expect("entry data");
            (name, data)
        })
        .collect()
}

/// A gzipped tar of these files.
fn pack(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut header = tar::Header::new_ustar();
        header.set_path(name).expect("path");
        header.set_size(data.len() as u64);
        header.set_mode(0o600);
        header.set_cksum();
        builder.append(&header, data.as_slice()).expect("append");
    }
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(&builder.into_inner().expect("tar")).expect("gzip");
    gzip.finish().expect("gzip")
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

async fn raw(agent: &TestAgent, key: &str) -> (u16, String) {
    let response = agent.get(&format!("/v1/kv/{key}?raw")).await;
    (response.status().as_u16(), response.text().await.unwrap_or_default())
}

#[tokio::test]
async fn save_is_consuls_archive_and_damage_is_refused() {
    let agent = TestAgent::start().await;
    agent.put("/v1/kv/app/a", "1").await;
    agent.put("/v1/kv/app/b", "2").await;

    tracing::info!("GET /v1/snapshot is a gzipped tar with Consul's three files");
    let response = agent.get("/v1/snapshot").await;
    assert_eq!(response.status(), 200);
    let index: u64 = response.headers()["x-consul-index"].to_str().unwrap().parse().unwrap();
    let archive = response.bytes().await.unwrap().to_vec();
    assert_eq!(archive[..2], [0x1f, 0x8b], "gzip magic");
    let files = unpack(&archive);
    let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["meta.json", "state.bin", "SHA256SUMS"]);
    let meta: serde_json::Value = serde_json::from_slice(&files[0].1).unwrap();
    assert_eq!(meta["Version"], 1);
    assert_eq!(meta["Index"], index, "{meta}");
    assert!(meta["Term"].as_u64().unwrap() >= 1, "{meta}");
    assert_eq!(meta["Size"], files[1].1.len(), "Size is state.bin's");
    let id = meta["ID"].as_str().unwrap();
    assert!(id.starts_with(&format!("{}-{index}-", meta["Term"])), "Consul's term-index-time ID: {id}");
    assert_eq!(meta["Configuration"]["Servers"].as_array().map(Vec::len), Some(1), "{meta}");
    let sums = String::from_utf8(files[2].1.clone()).unwrap();
    assert!(sums.contains(&format!("{}  meta.json\n", sha256_hex(&files[0].1))), "{sums}");
    assert!(sums.contains(&format!("{}  state.bin\n", sha256_hex(&files[1].1))), "{sums}");

    agent.put("/v1/kv/app/a", "9").await;
    tracing::info!("a tampered state, a broken gzip stream and a gzip bomb are refused");
    let mut tampered = files.clone();
    let middle = tampered[1].1.len() / 2;
    tampered[1].1[middle] ^= 0x01;
    let mut broken = archive.clone();
    let at = broken.len() / 2;
    broken[at] ^= 0xff;
    let mut extra = files.clone();
    extra.insert(1, ("notes.txt".into(), b"hello".to_vec()));
    for (what, body, expected) in [("tampered", pack(&tampered), "hash check failed"), ("broken", broken, "snapshot"), ("extra file", pack(&extra), "unexpected file")] {
        let response = agent.put("/v1/snapshot", body).await;
        assert_eq!(response.status(), 400, "{what}");
        let text = response.text().await.unwrap();
        assert!(text.contains(expected), "{what}: {text}");
    }
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..16 {
        bomb.write_all(&zeros).unwrap();
    }
    let bomb = bomb.finish().unwrap();
    assert!(bomb.len() < 64 * 1024, "{} bytes", bomb.len());
    let response = agent.put("/v1/snapshot", bomb).await;
    assert_eq!(response.status(), 413, "a gzip bomb stops at the unpack limit");
    assert_eq!(raw(&agent, "app/a").await, (200, "9".into()), "nothing changed");
    assert!(agent.get_json("/v1/agent/self").await["Config"].is_object(), "the agent is still up");

    tracing::info!("the archive restores");
    let response = agent.put("/v1/snapshot", archive.clone()).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    assert_eq!(raw(&agent, "app/a").await, (200, "1".into()));

    tracing::info!("a bare cairn snapshot (the format saved before the archive) still restores");
    agent.put("/v1/kv/app/a", "7").await;
    let bare = files[1].1.clone();
    assert!(bare.starts_with(b"CAIRNSNAP"));
    let response = agent.put("/v1/snapshot", bare).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    assert_eq!(raw(&agent, "app/a").await, (200, "1".into()));
}

#[tokio::test]
async fn cli_save_inspect_restore_and_reject_corrupt_files() {
    let agent = TestAgent::start().await;
    agent.put("/v1/kv/app/a", "1").await;
    agent.put("/v1/kv/app/b", "2").await;
    let file = agent.dir.path().join("backup.snap");
    let file_arg = file.display().to_string();
    let (code, stdout, stderr) = agent.cli(&["snapshot", "save", &file_arg]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.starts_with("Saved and verified snapshot to index "), "{stderr}");
    assert!(stdout.is_empty() && !stderr.contains('\r'), "no progress bar when piped: {stdout:?} {stderr:?}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600, "a backup holds secrets");

    let (code, stdout, _) = agent.cli(&["snapshot", "inspect", &file_arg]);
    assert_eq!(code, 0);
    let meta: serde_json::Value = serde_json::from_slice(&unpack(&std::fs::read(&file).unwrap())[0].1).unwrap();
    for line in [format!(" ID           {}", meta["ID"].as_str().unwrap()), format!(" Index        {}", meta["Index"]), " Version      1".into()] {
        assert!(stdout.contains(&line), "{line:?} in\n{stdout}");
    }
    assert!(stdout.contains(" Type") && stdout.contains(" KVS ") && stdout.contains(" Total"), "{stdout}");
    let (code, stdout, _) = agent.cli(&["snapshot", "inspect", "-format=json", &file_arg]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["Meta"]["Index"], meta["Index"]);
    assert!(json["Stats"].as_array().unwrap().iter().any(|s| s["Name"] == "KVS" && s["Count"] == 2), "{json}");

    agent.put("/v1/kv/app/a", "9").await;
    agent.delete("/v1/kv/app/b").await;
    agent.put("/v1/kv/app/c", "3").await;
    let before = agent.get("/v1/kv/app?recurse").await;
    let index_before: u64 = before.headers()["x-consul-index"].to_str().unwrap().parse().unwrap();

    tracing::info!("corrupt and truncated files are refused, and nothing changes");
    let bytes = std::fs::read(&file).unwrap();
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x55;
    for (name, damaged) in [("flipped.snap", flipped), ("truncated.snap", bytes[..bytes.len() - 7].to_vec())] {
        let path = agent.dir.path().join(name);
        std::fs::write(&path, &damaged).unwrap();
        let (code, _, stderr) = agent.cli(&["snapshot", "restore", &path.display().to_string()]);
        assert_ne!(code, 0, "{name} was accepted");
        assert!(stderr.contains("Error restoring snapshot"), "{stderr}");
        let response = agent.put("/v1/snapshot", damaged).await;
        assert_eq!(response.status(), 400, "{name} over HTTP");
    }
    assert_eq!(raw(&agent, "app/a").await, (200, "9".into()));
    assert_eq!(raw(&agent, "app/c").await, (200, "3".into()));

    tracing::info!("a good file restores the saved state exactly; indexes keep moving forward");
    let (code, _, stderr) = agent.cli(&["snapshot", "restore", &file_arg]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stderr.trim(), "Restored snapshot");
    assert_eq!(raw(&agent, "app/a").await, (200, "1".into()));
    assert_eq!(raw(&agent, "app/b").await, (200, "2".into()));
    assert_eq!(agent.get("/v1/kv/app/c").await.status(), 404);
    // Restored keys keep their own ModifyIndex (as in Consul, a restore may move a key's index
    // back); the table's index moves forward so blocking queries on the prefix wake.
    let after = agent.get("/v1/kv/app?recurse").await;
    let index_after: u64 = after.headers()["x-consul-index"].to_str().unwrap().parse().unwrap();
    assert!(index_after > index_before, "index moved forward: {index_before} -> {index_after}");
    assert_eq!(agent.put("/v1/kv/app/d", "4").await.status(), 200);
}

#[tokio::test]
async fn a_backup_restores_into_a_fresh_cluster() {
    let source = TestAgent::start().await;
    for i in 0..20 {
        source.put(&format!("/v1/kv/data/{i}"), format!("value-{i}")).await;
    }
    let file = source.dir.path().join("backup.snap");
    let (code, _, stderr) = source.cli(&["snapshot", "save", &file.display().to_string()]);
    assert_eq!(code, 0, "{stderr}");
    let backup = std::fs::read(&file).unwrap();
    drop(source);

    tracing::info!("a new three-server cluster, restored through a follower");
    let cluster = TestCluster::start(3).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let follower = (leader + 1) % 3;
    let response = cluster.client.put(format!("{}/v1/snapshot", cluster.servers[follower].http())).body(backup).send().await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    for server in &cluster.servers {
        let url = format!("{}/v1/kv/data/?recurse&stale", server.http());
        let complete = eventually(10_000, async || {
            let Ok(response) = cluster.client.get(&url).send().await else { return false };
            let entries: Vec<serde_json::Value> = response.json().await.unwrap_or_default();
            entries.len() == 20
        })
        .await;
        assert!(complete, "every server holds the 20 restored keys: {url}");
    }
    let value = cluster.client.get(format!("{}/v1/kv/data/7?raw", cluster.servers[leader].http())).send().await.unwrap().text().await.unwrap();
    assert_eq!(value, "value-7");
}
