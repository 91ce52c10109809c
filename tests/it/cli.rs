//! The CLI against a real agent: data on stdout, messages on stderr, non-zero exit on errors.

use crate::util::TestAgent;

#[tokio::test]
async fn cli_kv_catalog_services_members() {
    let agent = TestAgent::start().await;
    let (code, _, stderr) = agent.cli(&["kv", "put", "app/greeting", "hello"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, _) = agent.cli(&["kv", "get", "app/greeting"]);
    assert_eq!((code, stdout.trim()), (0, "hello"));
    let (code, _, stderr) = agent.cli(&["kv", "get", "app/missing"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("No key exists at: app/missing"), "{stderr}");

    let (code, _, stderr) = agent.cli(&["services", "register", "-name=web", "-port=8080", "-tag=v1"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, _) = agent.cli(&["catalog", "services"]);
    assert_eq!(code, 0);
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["consul", "web"]);
    let (code, stdout, _) = agent.cli(&["catalog", "nodes"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("test-node"), "{stdout}");
    let (code, stdout, _) = agent.cli(&["members"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("test-node") && stdout.contains("alive") && stdout.contains("server"), "{stdout}");
    let (code, _, stderr) = agent.cli(&["services", "deregister", "-id=web"]);
    assert_eq!(code, 0, "{stderr}");
    // export, then import under another prefix: same keys, flags and bytes.
    agent.put("/v1/kv/app/flagged?flags=42", vec![0u8, 159, 146, 150]).await;
    let (code, exported, stderr) = agent.cli(&["kv", "export", "app/"]);
    assert_eq!(code, 0, "{stderr}");
    let file = agent.dir.path().join("export.json");
    std::fs::write(&file, &exported).unwrap();
    let (code, _, stderr) = agent.cli(&["kv", "import", "-prefix=copy/", &format!("@{}", file.display())]);
    assert_eq!(code, 0, "{stderr}");
    let copied = agent.get_json("/v1/kv/copy/app/flagged").await;
    assert_eq!(copied[0]["Flags"], 42);
    assert_eq!(agent.get("/v1/kv/copy/app/flagged?raw").await.bytes().await.unwrap().to_vec(), vec![0u8, 159, 146, 150]);
    assert_eq!(agent.get("/v1/kv/copy/app/greeting?raw").await.text().await.unwrap(), "hello");
    let (code, _, stderr) = agent.cli(&["kv", "import", "not json"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("Cannot parse"), "{stderr}");

    let (code, _, stderr) = agent.cli(&["kv", "delete", "app/greeting"]);
    assert_eq!(code, 0, "{stderr}");

    let (code, stdout, _) = agent.cli(&["version"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("Cairn v"));
}

#[test]
fn cli_reports_an_agent_that_is_down() {
    let port = crate::util::free_port();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["kv", "get", &format!("-http-addr=127.0.0.1:{port}"), "anything"])
        .output()
        .expect("run the cli");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Failed to connect to agent"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn agent_rejects_bad_flag_values_and_warns_on_unknown_flags() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["agent", "-http-port=notaport", "-dev"])
        .output()
        .expect("run cairn agent");
    assert_ne!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("http-port"), "{stderr}");
}
