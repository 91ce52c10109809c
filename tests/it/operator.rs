//! Operator endpoints as Consul's: the Raft configuration's `Index`, the replicated autopilot
//! configuration (GET, PUT with `?cas=`, Enterprise settings refused, what is not acted on
//! named in a `Warning`), autopilot's health and state (a follower that stops answering goes
//! unhealthy after `LastContactThreshold`), the usage counts, and the
//! `cairn operator autopilot` verbs.

use std::time::Duration;

use serde_json::{Value, json};

use crate::cluster_util::TestCluster;
use crate::util::{TestAgent, eventually};

async fn autopilot_config(agent: &TestAgent) -> (Value, Option<String>) {
    let response = agent.get("/v1/operator/autopilot/configuration").await;
    assert_eq!(response.status(), 200);
    let warning = response.headers().get("warning").map(|v| v.to_str().unwrap().to_owned());
    (response.json().await.unwrap(), warning)
}

async fn put_config(agent: &TestAgent, query: &str, body: Value) -> (u16, String) {
    let response = agent.put(&format!("/v1/operator/autopilot/configuration{query}"), body.to_string()).await;
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn autopilot_configuration_is_replicated_state_with_check_and_set() {
    let mut agent = TestAgent::start().await;
    tracing::info!("the raft configuration's Index is 0, as in Consul 1.20-1.22; the applied index is the server's own");
    let configuration = agent.get_json("/v1/operator/raft/configuration").await;
    assert_eq!(configuration["Index"], 0, "{configuration}");
    assert!(configuration["Servers"][0]["Raft"]["AppliedIndex"].as_u64().unwrap() > 0, "{configuration}");

    tracing::info!("the leader stores the agent's settings: Consul's defaults");
    assert!(eventually(10_000, async || autopilot_config(&agent).await.0["ModifyIndex"].as_u64() > Some(0)).await, "seeded");
    let (config, warning) = autopilot_config(&agent).await;
    let expected = json!({"CleanupDeadServers": true, "LastContactThreshold": "200ms", "MaxTrailingLogs": 250, "MinQuorum": 0,
        "ServerStabilizationTime": "10s", "RedundancyZoneTag": "", "DisableUpgradeMigration": false, "UpgradeVersionTag": ""});
    for (name, value) in expected.as_object().unwrap() {
        assert_eq!(&config[name], value, "{name} in {config}");
    }
    assert!(warning.as_deref().is_some_and(|w| w.starts_with("299 cairn \"CleanupDeadServers is stored but not acted on")), "{warning:?}");
    let index = config["ModifyIndex"].as_u64().unwrap();

    tracing::info!("check-and-set: a stale index changes nothing; the right one applies, durations kept exactly");
    let wanted = json!({"CleanupDeadServers": false, "LastContactThreshold": "7.5s", "MaxTrailingLogs": 17, "MinQuorum": 3, "ServerStabilizationTime": "1m30s"});
    assert_eq!(put_config(&agent, &format!("?cas={}", index + 1000), wanted.clone()).await, (200, "false".into()));
    assert_eq!(autopilot_config(&agent).await.0["ModifyIndex"], index);
    assert_eq!(put_config(&agent, &format!("?cas={index}"), wanted.clone()).await, (200, "true".into()));
    let (config, warning) = autopilot_config(&agent).await;
    for (name, value) in wanted.as_object().unwrap() {
        assert_eq!(&config[name], value, "{name} in {config}");
    }
    assert_eq!(warning, None, "everything set is acted on");
    assert!(config["ModifyIndex"].as_u64().unwrap() > index && config["CreateIndex"].as_u64() == Some(index), "{config}");

    tracing::info!("Enterprise settings and bad input are refused with 400; nothing changes");
    for (body, expected) in [
        (json!({"RedundancyZoneTag": "zone"}), "Consul Enterprise"),
        (json!({"DisableUpgradeMigration": true}), "Consul Enterprise"),
        (json!({"LastContactThreshold": "soon"}), "Error parsing autopilot config"),
    ] {
        let (status, text) = put_config(&agent, "", body).await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains(expected), "{text}");
    }
    assert_eq!(put_config(&agent, "?cas=x", json!({})).await.0, 400);
    assert_eq!(autopilot_config(&agent).await.0["MaxTrailingLogs"], 17);

    tracing::info!("the configuration survives a restart (a replicated row)");
    let before = autopilot_config(&agent).await.0;
    agent.restart().await;
    assert_eq!(autopilot_config(&agent).await.0, before);
}

#[tokio::test]
async fn autopilot_cli_state_and_usage() {
    let agent = TestAgent::start().await;
    assert!(eventually(10_000, async || autopilot_config(&agent).await.0["ModifyIndex"].as_u64() > Some(0)).await, "seeded");

    tracing::info!("get-config prints Consul's lines; the setting not acted on is named on stderr");
    let (code, stdout, stderr) = agent.cli(&["operator", "autopilot", "get-config"]);
    assert_eq!(code, 0, "{stderr}");
    let expected = "CleanupDeadServers = true\nLastContactThreshold = 200ms\nMaxTrailingLogs = 250\nMinQuorum = 0\nServerStabilizationTime = 10s\nRedundancyZoneTag = \"\"\nDisableUpgradeMigration = false\nUpgradeVersionTag = \"\"\n";
    assert_eq!(stdout, expected);
    assert!(stderr.contains("Warning: CleanupDeadServers is stored but not acted on"), "{stderr}");

    let (code, stdout, stderr) = agent.cli(&["operator", "autopilot", "set-config", "-cleanup-dead-servers=false", "-max-trailing-logs", "99", "-last-contact-threshold=750ms"]);
    assert_eq!((code, stdout.as_str()), (0, "Configuration updated!\n"), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    let (_, stdout, _) = agent.cli(&["operator", "autopilot", "get-config"]);
    assert!(stdout.starts_with("CleanupDeadServers = false\nLastContactThreshold = 750ms\nMaxTrailingLogs = 99\nMinQuorum = 0\nServerStabilizationTime = 10s\n"), "{stdout}");
    let (code, _, stderr) = agent.cli(&["operator", "autopilot", "set-config", "-redundancy-zone-tag=zone"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("Error setting Autopilot configuration") && stderr.contains("Consul Enterprise"), "{stderr}");

    tracing::info!("state: the leader healthy, alone");
    let state = agent.get_json("/v1/operator/autopilot/state").await;
    let leader = state["Leader"].as_str().unwrap().to_owned();
    assert_eq!(state["Voters"], json!([leader]));
    assert_eq!((state["Healthy"].clone(), state["FailureTolerance"].clone()), (json!(true), json!(0)), "{state}");
    let server = &state["Servers"][&leader];
    assert_eq!((server["Status"].as_str(), server["NodeType"].as_str(), server["NodeStatus"].as_str()), (Some("leader"), Some("voter"), Some("alive")), "{state}");
    assert_eq!(server["LastContact"], "0s");
    assert!(server["StableSince"].as_str().is_some_and(|t| t.ends_with('Z')), "{state}");
    let (code, stdout, stderr) = agent.cli(&["operator", "autopilot", "state"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("Healthy:                      true\n") && stdout.contains(&format!("Leader:                       {leader}\n")), "{stdout}");
    assert!(stdout.contains("      Status:          leader\n"), "{stdout}");
    let (code, stdout, _) = agent.cli(&["operator", "autopilot", "state", "-format=json"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap()["Leader"], json!(leader));

    tracing::info!("usage counts nodes, services and instances, and blocks on them");
    let usage = agent.get_json("/v1/operator/usage").await;
    let dc = &usage["Usage"]["dc1"];
    assert!(dc["Nodes"].as_u64() >= Some(1) && usage["KnownLeader"] == true, "{usage}");
    let instances = dc["ServiceInstances"].as_u64().unwrap();
    let registration = json!({"Name": "web", "Port": 80});
    assert_eq!(agent.put("/v1/agent/service/register", registration.to_string()).await.status(), 200);
    let usage = agent.get_json("/v1/operator/usage?global&stale").await;
    let dc = &usage["Usage"]["dc1"];
    assert_eq!(dc["ServiceInstances"].as_u64(), Some(instances + 1), "{usage}");
    assert_eq!(dc["BillableServiceInstances"].as_u64(), Some(1), "web, not consul: {usage}");
    assert_eq!(dc["ConnectServiceInstances"]["connect-proxy"], 0, "{usage}");
}

#[tokio::test]
async fn a_follower_that_stops_answering_turns_unhealthy_after_the_last_contact_threshold() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let follower = (leader + 1) % 3;
    let health = |i: usize| {
        let url = format!("{}/v1/operator/autopilot/health", cluster.servers[i].http());
        let client = cluster.client.clone();
        async move {
            let response = client.get(url).send().await.ok()?;
            let status = response.status().as_u16();
            Some((status, response.json::<Value>().await.ok()?))
        }
    };
    tracing::info!("all healthy (asked through a follower, which relays to the leader)");
    assert!(eventually(10_000, async || health(follower).await.is_some_and(|(status, h)| status == 200 && h["FailureTolerance"] == 1)).await);
    let (_, body) = health(follower).await.unwrap();
    let follower_name = &cluster.servers[follower].name;
    assert_eq!(body["Servers"].as_array().unwrap().len(), 3);

    tracing::info!("cut the follower off: past LastContactThreshold it is unhealthy, the cluster answers 429");
    cluster.partition(&[follower]).await;
    let unhealthy = eventually(10_000, async || {
        let Some((status, body)) = health(leader).await else { return false };
        let server = body["Servers"].as_array().unwrap().iter().find(|s| s["Name"] == json!(follower_name)).cloned().unwrap_or_default();
        status == 429 && server["Healthy"] == false && body["FailureTolerance"] == 0
    })
    .await;
    assert!(unhealthy, "{:?}", health(leader).await);
    let (_, body) = health(leader).await.unwrap();
    let server = body["Servers"].as_array().unwrap().iter().find(|s| s["Name"] == json!(follower_name)).cloned().unwrap();
    assert!(server["LastContact"].as_str().is_some_and(|c| c != "0s"), "when it last answered: {server}");

    tracing::info!("a larger threshold makes it healthy again while still cut off");
    let url = format!("{}/v1/operator/autopilot/configuration", cluster.servers[leader].http());
    let config: Value = cluster.client.get(&url).send().await.unwrap().json().await.unwrap();
    let mut config = config.as_object().unwrap().clone();
    config.insert("LastContactThreshold".into(), json!("10m"));
    let written = cluster.client.put(&url).body(Value::Object(config).to_string()).send().await.unwrap().text().await.unwrap();
    assert_eq!(written, "true");
    assert!(eventually(10_000, async || health(leader).await.is_some_and(|(status, _)| status == 200)).await, "healthy within 10m of contact");
    cluster.heal().await;
}
