//! The `--gossip-sim` report: memberlist's anchor formula, the table on stdout and the
//! `RESULT {json}` line.

use cairn::gossip::timing::GossipTiming;

use super::{DETECTION_TIMEOUT_S, GossipSimArgs, PoolResult};

/// memberlist's `SuspicionMaxTimeoutMult`: Lifeguard starts a suspicion at this multiple of the
/// suspicion timeout and shrinks it as other members confirm the suspicion.
const LIFEGUARD_SUSPICION_MAX_MULT: f64 = 6.0;
/// Bytes cairn's gossip envelope adds around each foca payload when sealed with AES-GCM
/// (version, kind, nonce, tag; 2 in plaintext), as `gossip::envelope` writes it.
const ENVELOPE_BYTES: f64 = 30.0;
/// IPv4 and UDP headers.
const IP_UDP_HEADER_BYTES: f64 = 28.0;

/// memberlist's expected time, in seconds, for every member to know of a failure, with the
/// suspicion timeout at 1× and at Lifeguard's 6×: see the formula in the `gossip_sim` doc.
pub(super) fn anchor_s(members: usize, timing: &GossipTiming) -> (f64, f64) {
    let n = members as f64;
    let probe_s = timing.probe_interval_ms as f64 / 1000.0;
    let suspicion_s = f64::from(timing.suspicion_mult) * n.log10().max(1.0) * probe_s;
    let dissemination_s = f64::from(timing.retransmit_mult) * (n + 1.0).log10() * timing.gossip_interval_ms as f64 / 1000.0;
    (probe_s + suspicion_s + dissemination_s, probe_s + LIFEGUARD_SUSPICION_MAX_MULT * suspicion_s + dissemination_s)
}

/// Nearest-rank percentile of sorted samples; 0 when there are none.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((p / 100.0) * (sorted.len() - 1) as f64).round() as usize]
}

fn sorted(samples: &[f64]) -> Vec<f64> {
    let mut samples = samples.to_vec();
    samples.sort_by(f64::total_cmp);
    samples
}

/// Figures derived from one pool's raw result.
struct Figures {
    all_know: Vec<f64>,
    per_member_p50_s: f64,
    anchor_s: (f64, f64),
    target_met: bool,
    payload_bytes_per_s: f64,
    packets_per_s: f64,
    wire_bytes_per_s: f64,
}

fn figures(result: &PoolResult, timing: &GossipTiming) -> Figures {
    let all_know = sorted(&result.all_know_s);
    let anchor_s = anchor_s(result.members, timing);
    let member_seconds = result.members as f64 * result.steady_s;
    let packets_per_s = result.steady.packets_sent as f64 / member_seconds;
    let payload_bytes_per_s = result.steady.payload_bytes_sent as f64 / member_seconds;
    let target_met = result.undetected_trials == 0
        && percentile(&all_know, 99.0) <= anchor_s.0
        && result.steady.false_down_notifications == 0
        && result.trial_false_down_notifications == 0;
    Figures {
        per_member_p50_s: percentile(&sorted(&result.per_member_s), 50.0),
        anchor_s,
        target_met,
        payload_bytes_per_s,
        packets_per_s,
        wire_bytes_per_s: payload_bytes_per_s + packets_per_s * (ENVELOPE_BYTES + IP_UDP_HEADER_BYTES),
        all_know,
    }
}

/// Prints the settings, one table row per pool size, and the `RESULT` line.
pub(super) fn print(args: &GossipSimArgs, timing: &GossipTiming, results: &[PoolResult]) {
    print_settings(args, timing, results);
    let rows = print_table(timing, results);
    println!(
        "RESULT {{\"gossip_sim\":{{\"loss\":{},\"latency_ms\":[{},{}],\"seed\":{},\"identity_bytes\":{},\"notify_down_members\":{},\"foca_stale_timers\":{},\"pools\":[{}]}}}}",
        args.loss,
        args.latency_ms.0,
        args.latency_ms.1,
        args.seed,
        args.identity_bytes,
        !args.no_notify_down,
        args.foca_stale_timers,
        rows.join(",")
    );
}

/// The run's settings and, per pool, foca's configuration and the steady state's counters.
fn print_settings(args: &GossipSimArgs, timing: &GossipTiming, results: &[PoolResult]) {
    println!(
        "gossip-sim: loss {:.1}%, one-way latency {}-{} ms uniform, seed {}, identity: simulated (u32 member + u16 generation, renewable) padded to {} B on the wire (cairn's NodeId node-1234@IPv4#bump is 25 B)",
        args.loss * 100.0,
        args.latency_ms.0,
        args.latency_ms.1,
        args.seed,
        args.identity_bytes
    );
    println!("timing: GossipTiming::lan_default() = {timing:?}");
    println!("anchor (memberlist): probe interval + suspicion_mult x max(1, log10 N) x probe interval (Lifeguard: up to 6x) + retransmit_mult x log10(N+1) x gossip interval");
    for result in results {
        let foca = &result.foca;
        println!(
            "foca_config({}): probe {:?}, probe rtt {:?}, suspect->down {:?}, max transmissions {}, periodic gossip {:?}, notify_down_members {}{}; steady state {:.1} simulated min; trials {} (undetected within {DETECTION_TIMEOUT_S} s, counted as {DETECTION_TIMEOUT_S} s: {}); wall {:.0} s",
            result.members,
            foca.probe_period,
            foca.probe_rtt,
            foca.suspect_to_down_after,
            foca.max_transmissions,
            foca.periodic_gossip.as_ref().map(|gossip| (gossip.frequency, gossip.num_members)),
            foca.notify_down_members,
            match (args.no_notify_down, args.foca_stale_timers) {
                (true, _) => " (--no-notify-down)",
                (false, true) => " (--foca-stale-timers: stale suspicion timers handed to foca)",
                (false, false) => "",
            },
            result.steady_s / 60.0,
            result.all_know_s.len(),
            result.undetected_trials,
            result.wall.as_secs_f64()
        );
        let steady = &result.steady;
        println!(
            "  steady state: {} packets ({:.2}% lost), down notifications about running members {}, rejoins {}, renames seen {}, TurnUndead sent {}, stale suspicion timers dropped {}, foca errors {:?}",
            steady.packets_sent,
            100.0 * steady.packets_lost as f64 / steady.packets_sent.max(1) as f64,
            steady.false_down_notifications,
            steady.rejoins,
            steady.renames,
            steady.turn_undead_sent,
            steady.stale_suspicion_timers_dropped,
            steady.errors
        );
    }
}

/// One row per pool size; returns the rows' JSON.
fn print_table(timing: &GossipTiming, results: &[PoolResult]) -> Vec<String> {
    println!(
        "{:>7} {:>13} {:>13} {:>13} {:>14} {:>16} {:>7} {:>17} {:>9} {:>11} {:>11}",
        "members", "all-know p50", "all-know p99", "member p50", "anchor 1x/6x", "false downs", "target", "payload B/s/memb", "pkt/s/mb", "wire B/s/mb", "lost pkts"
    );
    let mut rows = Vec::new();
    for result in results {
        let figures = figures(result, timing);
        let false_downs = format!(
            "{}/{}/{}",
            result.steady.false_down_notifications + result.trial_false_down_notifications,
            result.steady.falsely_downed.len(),
            result.steady.rejoins
        );
        println!(
            "{:>7} {:>11.2} s {:>11.2} s {:>11.2} s {:>6.1}/{:>5.1} s {:>16} {:>7} {:>17.1} {:>9.2} {:>11.1} {:>10.2}%",
            result.members,
            percentile(&figures.all_know, 50.0),
            percentile(&figures.all_know, 99.0),
            figures.per_member_p50_s,
            figures.anchor_s.0,
            figures.anchor_s.1,
            false_downs,
            if figures.target_met { "met" } else { "MISSED" },
            figures.payload_bytes_per_s,
            figures.packets_per_s,
            figures.wire_bytes_per_s,
            100.0 * result.steady.packets_lost as f64 / result.steady.packets_sent.max(1) as f64
        );
        rows.push(json_row(result, &figures));
    }
    println!("false downs = down notifications about running members (steady + trials) / distinct identities / rejoins (steady); wire = payload + 30 B sealed envelope + 28 B IPv4/UDP per packet");
    rows
}

fn json_row(result: &PoolResult, figures: &Figures) -> String {
    let all_know = &figures.all_know;
    format!(
        concat!(
            r#"{{"members":{},"trials":{},"undetected":{},"all_know_s":{{"p50":{:.3},"p99":{:.3},"max":{:.3}}},"per_member_p50_s":{:.3},"#,
            r#""anchor_s":{{"memberlist":{:.3},"lifeguard_max":{:.3}}},"target_met":{},"steady":{{"sim_s":{:.0},"false_down_notifications":{},"#,
            r#""falsely_downed_identities":{},"rejoins":{},"renames":{},"turn_undead_sent":{},"payload_bytes_per_s_per_member":{:.1},"packets_per_s_per_member":{:.3},"#,
            r#""wire_bytes_per_s_per_member":{:.1}}},"trial_false_down_notifications":{},"wall_s":{:.0}}}"#
        ),
        result.members,
        all_know.len(),
        result.undetected_trials,
        percentile(all_know, 50.0),
        percentile(all_know, 99.0),
        all_know.last().copied().unwrap_or(0.0),
        figures.per_member_p50_s,
        figures.anchor_s.0,
        figures.anchor_s.1,
        figures.target_met,
        result.steady_s,
        result.steady.false_down_notifications,
        result.steady.falsely_downed.len(),
        result.steady.rejoins,
        result.steady.renames,
        result.steady.turn_undead_sent,
        figures.payload_bytes_per_s,
        figures.packets_per_s,
        figures.wire_bytes_per_s,
        result.trial_false_down_notifications,
        result.wall.as_secs_f64()
    )
}
