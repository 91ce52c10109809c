//! Backups: `cairn snapshot save|restore|inspect` against a real agent; a corrupt or truncated
//! file is rejected and changes nothing.

use crate::util::TestAgent;

#[tokio::test]
async fn save_restore_and_reject_corrupt_snapshots() {
    let agent = TestAgent::start().await;
    agent.put("/v1/kv/app/a", "1").await;
    agent.put("/v1/kv/app/b", "2").await;
    let file = agent.dir.path().join("backup.snap");
    let file_arg = file.display().to_string();
    let (code, _, stderr) = agent.cli(&["snapshot", "save", &file_arg]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, _) = agent.cli(&["snapshot", "inspect", &file_arg]);
    assert_eq!(code, 0);
    assert!(stdout.contains("Rows") && stdout.contains("Index"), "{stdout}");

    agent.put("/v1/kv/app/a", "9").await;
    agent.delete("/v1/kv/app/b").await;
    agent.put("/v1/kv/app/c", "3").await;
    let before = agent.get("/v1/kv/app?recurse").await;
    let index_before: u64 = before.headers()["x-consul-index"].to_str().unwrap().parse().unwrap();

    // Corrupt and truncated files are refused, and nothing changes.
    let bytes = std::fs::read(&file).unwrap();
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x55;
    for (name, damaged) in [("flipped.snap", flipped), ("truncated.snap", bytes[..bytes.len() - 7].to_vec())] {
        let path = agent.dir.path().join(name);
        std::fs::write(&path, &damaged).unwrap();
        let (code, _, stderr) = agent.cli(&["snapshot", "restore", &path.display().to_string()]);
        assert_ne!(code, 0, "{name} was accepted");
        assert!(stderr.contains("snapshot"), "{stderr}");
        let response = agent.put("/v1/snapshot", damaged).await;
        assert_eq!(response.status(), 400, "{name} over HTTP");
    }
    assert_eq!(agent.get("/v1/kv/app/a?raw").await.text().await.unwrap(), "9");
    assert_eq!(agent.get("/v1/kv/app/c?raw").await.text().await.unwrap(), "3");

    // A good file restores the saved state exactly; indexes keep moving forward.
    let (code, _, stderr) = agent.cli(&["snapshot", "restore", &file_arg]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(agent.get("/v1/kv/app/a?raw").await.text().await.unwrap(), "1");
    assert_eq!(agent.get("/v1/kv/app/b?raw").await.text().await.unwrap(), "2");
    assert_eq!(agent.get("/v1/kv/app/c").await.status(), 404);
    // Restored keys keep their own ModifyIndex (as in Consul, a restore may move a key's index
    // back); the table's index moves forward so blocking queries on the prefix wake.
    let after = agent.get("/v1/kv/app?recurse").await;
    let index_after: u64 = after.headers()["x-consul-index"].to_str().unwrap().parse().unwrap();
    assert!(index_after > index_before, "index moved forward: {index_before} -> {index_after}");
    // The agent keeps working and its own node is re-synced by anti-entropy.
    assert_eq!(agent.put("/v1/kv/app/d", "4").await.status(), 200);
}
