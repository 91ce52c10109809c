//! The simulated LAN: a pool of foca members, one simulated clock and one priority queue of
//! events (foca timers and packets in flight), delivered in deadline order.
//!
//! Every packet a member sends is counted, then lost with probability `loss` or delivered
//! after a one-way latency drawn uniformly from `latency_ns`. A stopped member handles nothing
//! more: its timers and the packets sent to it are dropped, so it sends and answers nothing.
//! Everything random comes from seeded generators, so a run is reproducible from its seed.
//! Packet bytes live in reused buffers (a free list), so a packet costs no allocation once the
//! pool has warmed up.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, HashSet};
use std::time::Duration;

use foca::{Foca, Member, NoCustomBroadcast, Notification, Runtime, Timer};
use rand010::rngs::SmallRng;
use rand010::{RngExt, SeedableRng};

use cairn::gossip::suspicion::timer_still_due;

use super::identity::{SimCodec, SimIdentity, TURN_UNDEAD_TAG};

/// A member's foca instance, as the simulator drives it.
pub(super) type SimFoca = Foca<SimIdentity, SimCodec, SmallRng, NoCustomBroadcast>;

/// The network's behaviour, and one driver experiment.
pub(super) struct NetworkConfig {
    pub(super) loss: f64,
    /// One-way latency range, inclusive.
    pub(super) latency_ns: (u64, u64),
    pub(super) seed: u64,
    /// Hand every timer to foca, skipping `gossip::suspicion::timer_still_due` (what the
    /// gossip task does): foca 2.0.0 then sends `TurnUndead` to refuted members (see [`Counters`]).
    pub(super) foca_stale_timers: bool,
}

/// What the members did, counted since the last [`Pool::take_counters`].
#[derive(Default)]
pub(super) struct Counters {
    pub(super) packets_sent: u64,
    pub(super) payload_bytes_sent: u64,
    pub(super) packets_lost: u64,
    /// `MemberDown` notifications about a member that was not stopped.
    pub(super) false_down_notifications: u64,
    /// Distinct (member, generation) identities some member declared down while not stopped.
    pub(super) falsely_downed: HashSet<(u32, u16)>,
    /// `Rejoin` notifications: a member learnt it was declared down and renewed its identity.
    pub(super) rejoins: u64,
    /// `Rename` notifications: a member saw another's identity replaced by a renewed one.
    pub(super) renames: u64,
    /// `TurnUndead` messages sent. foca sends one when it declares a member down, when a
    /// member it holds down talks to it, and also when a suspicion timer fires after the member
    /// refuted (foca 2.0.0 ignores the failed incarnation check there): the refuted member then
    /// renews its identity, which is most of the rejoins and renames.
    pub(super) turn_undead_sent: u64,
    /// Suspicion timers withheld by `timer_still_due` (none with `foca_stale_timers`).
    pub(super) stale_suspicion_timers_dropped: u64,
    /// foca errors by kind: none expected, but one is counted rather than fatal.
    pub(super) errors: BTreeMap<String, u64>,
}

/// The failure being watched: who stopped, when, and when each member learnt it.
struct Watch {
    victim: u32,
    stopped_at_ns: u64,
    learnt_at_ns: Vec<Option<u64>>,
    learnt: usize,
}

/// N members on one simulated LAN; see the module doc.
pub(super) struct Pool {
    members: Vec<SimFoca>,
    network: Network,
}

/// Everything a member's runtime touches, apart from the members themselves.
struct Network {
    now_ns: u64,
    sequence: u64,
    queue: BinaryHeap<Reverse<Event>>,
    buffers: Vec<Vec<u8>>,
    free_buffers: Vec<u32>,
    stopped: Vec<bool>,
    rng: SmallRng,
    loss: f64,
    latency_ns: (u64, u64),
    message_tag_position: usize,
    foca_stale_timers: bool,
    /// Added to every timer submitted while it is set: spreads the members' first timers over
    /// a probe period, so that a pool bootstrapped at one instant does not tick in lockstep.
    timer_phase_ns: u64,
    counters: Counters,
    watch: Option<Watch>,
}

struct Event {
    at_ns: u64,
    sequence: u64,
    kind: EventKind,
}

enum EventKind {
    Timer { member: u32, timer: Timer<SimIdentity> },
    Packet { to: u32, buffer: u32 },
}

/// The foca `Runtime` of one member during one call.
struct SimRuntime<'a> {
    network: &'a mut Network,
    member: u32,
}

impl Pool {
    /// `members` foca instances, not yet connected; see [`Pool::bootstrap`].
    pub(super) fn new(members: usize, foca_config: &foca::Config, identity_bytes: usize, network: &NetworkConfig) -> Pool {
        let members: Vec<SimFoca> = (0..members as u32)
            .map(|member| {
                let rng = SmallRng::seed_from_u64(network.seed ^ (u64::from(member) << 32 | 0x5EED));
                Foca::new(SimIdentity { member, generation: 0 }, foca_config.clone(), rng, SimCodec::new(identity_bytes))
            })
            .collect();
        let count = members.len();
        Pool {
            members,
            network: Network {
                now_ns: 0,
                sequence: 0,
                queue: BinaryHeap::new(),
                buffers: Vec::new(),
                free_buffers: Vec::new(),
                stopped: vec![false; count],
                rng: SmallRng::seed_from_u64(network.seed),
                loss: network.loss,
                latency_ns: network.latency_ns,
                message_tag_position: SimCodec::new(identity_bytes).message_tag_position(),
                foca_stale_timers: network.foca_stale_timers,
                timer_phase_ns: 0,
                counters: Counters::default(),
                watch: None,
            },
        }
    }

    /// Gives every member the whole roster (`apply_many`, not re-broadcast), so every view is
    /// full at once; each member's timers start at a random phase within `period`.
    pub(super) fn bootstrap(&mut self, period: Duration) -> Result<(), String> {
        let roster: Vec<SimIdentity> = self.members.iter().map(|foca| *foca.identity()).collect();
        for (position, foca) in self.members.iter_mut().enumerate() {
            self.network.timer_phase_ns = self.network.rng.random_range(0..period.as_nanos() as u64);
            let others = roster.iter().enumerate().filter(|(other, _)| *other != position).map(|(_, identity)| Member::alive(*identity));
            let runtime = SimRuntime { network: &mut self.network, member: position as u32 };
            foca.apply_many(others, false, runtime).map_err(|e| format!("bootstrap of member {position}: {e}"))?;
        }
        self.network.timer_phase_ns = 0;
        Ok(())
    }

    pub(super) fn now(&self) -> Duration {
        Duration::from_nanos(self.network.now_ns)
    }

    pub(super) fn member_count(&self) -> usize {
        self.members.len()
    }

    pub(super) fn is_stopped(&self, member: usize) -> bool {
        self.network.stopped[member]
    }

    /// Every running member sees every other running member as active.
    pub(super) fn views_are_full(&self) -> bool {
        let running = self.network.stopped.iter().filter(|stopped| !**stopped).count();
        self.members.iter().enumerate().all(|(member, foca)| self.network.stopped[member] || foca.num_members() == running - 1)
    }

    pub(super) fn counters(&self) -> &Counters {
        &self.network.counters
    }

    /// The counters so far; counting starts over from zero.
    pub(super) fn take_counters(&mut self) -> Counters {
        std::mem::take(&mut self.network.counters)
    }

    /// Delivers events up to `until` (simulated time since the start).
    pub(super) fn run_until(&mut self, until: Duration) {
        let until_ns = until.as_nanos() as u64;
        while self.network.queue.peek().is_some_and(|Reverse(event)| event.at_ns <= until_ns) {
            self.step();
        }
        self.network.now_ns = self.network.now_ns.max(until_ns);
    }

    /// Stops `victim` now and starts recording when each running member learns it is down.
    pub(super) fn stop_and_watch(&mut self, victim: usize) {
        self.network.stopped[victim] = true;
        let learnt_at_ns = vec![None; self.members.len()];
        self.network.watch = Some(Watch { victim: victim as u32, stopped_at_ns: self.network.now_ns, learnt_at_ns, learnt: 0 });
    }

    /// Runs until every running member learnt the watched failure, or until `timeout` after
    /// the stop. Returns, per running member, the time it took (None: never learnt).
    pub(super) fn run_until_known(&mut self, timeout: Duration) -> Vec<Option<Duration>> {
        let Some(stopped_at_ns) = self.network.watch.as_ref().map(|watch| watch.stopped_at_ns) else { return Vec::new() };
        let deadline_ns = stopped_at_ns + timeout.as_nanos() as u64;
        let running = self.network.stopped.iter().filter(|stopped| !**stopped).count();
        while self.network.watch.as_ref().is_some_and(|watch| watch.learnt < running)
            && self.network.queue.peek().is_some_and(|Reverse(event)| event.at_ns <= deadline_ns)
        {
            self.step();
        }
        let Some(watch) = self.network.watch.take() else { return Vec::new() };
        (0..self.members.len())
            .filter(|member| !self.network.stopped[*member])
            .map(|member| watch.learnt_at_ns[member].map(|at_ns| Duration::from_nanos(at_ns - stopped_at_ns)))
            .collect()
    }

    /// A timer the gossip task would withhold from foca (`timer_still_due`), unless
    /// `foca_stale_timers` is set; counted when withheld.
    fn is_stale_suspicion(&mut self, member: u32, timer: &Timer<SimIdentity>) -> bool {
        if self.network.foca_stale_timers || timer_still_due(self.members[member as usize].iter_membership_state(), timer) {
            return false;
        }
        self.network.counters.stale_suspicion_timers_dropped += 1;
        true
    }

    fn step(&mut self) {
        let Some(Reverse(event)) = self.network.queue.pop() else { return };
        self.network.now_ns = event.at_ns;
        match event.kind {
            EventKind::Timer { member, timer } => {
                if self.network.stopped[member as usize] || self.is_stale_suspicion(member, &timer) {
                    return;
                }
                let runtime = SimRuntime { network: &mut self.network, member };
                if let Err(error) = self.members[member as usize].handle_timer(timer, runtime) {
                    self.network.count_error(&error);
                }
            }
            EventKind::Packet { to, buffer } => {
                let data = std::mem::take(&mut self.network.buffers[buffer as usize]);
                if !self.network.stopped[to as usize] {
                    let runtime = SimRuntime { network: &mut self.network, member: to };
                    if let Err(error) = self.members[to as usize].handle_data(&data, runtime) {
                        self.network.count_error(&error);
                    }
                }
                self.network.buffers[buffer as usize] = data;
                self.network.free_buffers.push(buffer);
            }
        }
    }
}

impl Network {
    fn push(&mut self, at_ns: u64, kind: EventKind) {
        self.sequence += 1;
        self.queue.push(Reverse(Event { at_ns, sequence: self.sequence, kind }));
    }

    /// Counts by variant name only (no payload), so the map stays small.
    fn count_error(&mut self, error: &foca::Error) {
        let text = format!("{error:?}");
        let kind = text.split(['(', ' ', '{']).next().unwrap_or("unknown").to_string();
        *self.counters.errors.entry(kind).or_insert(0) += 1;
    }

    fn send(&mut self, to: u32, data: &[u8]) {
        self.counters.packets_sent += 1;
        self.counters.payload_bytes_sent += data.len() as u64;
        if data.get(self.message_tag_position) == Some(&TURN_UNDEAD_TAG) {
            self.counters.turn_undead_sent += 1;
        }
        let addressable = (to as usize) < self.stopped.len();
        if !addressable || (self.loss > 0.0 && self.rng.random_bool(self.loss)) {
            self.counters.packets_lost += 1;
            return;
        }
        let buffer = match self.free_buffers.pop() {
            Some(buffer) => buffer,
            None => {
                self.buffers.push(Vec::new());
                (self.buffers.len() - 1) as u32
            }
        };
        let bytes = &mut self.buffers[buffer as usize];
        bytes.clear();
        bytes.extend_from_slice(data);
        let (low_ns, high_ns) = self.latency_ns;
        let latency_ns = self.rng.random_range(low_ns..=high_ns);
        self.push(self.now_ns + latency_ns, EventKind::Packet { to, buffer });
    }

    fn observe(&mut self, observer: u32, notification: &Notification<'_, SimIdentity>) {
        match notification {
            Notification::MemberDown(identity) => {
                if let Some(watch) = self.watch.as_mut().filter(|watch| watch.victim == identity.member) {
                    let learnt_at = &mut watch.learnt_at_ns[observer as usize];
                    if learnt_at.is_none() {
                        *learnt_at = Some(self.now_ns);
                        watch.learnt += 1;
                    }
                } else if !self.stopped[identity.member as usize] {
                    self.counters.false_down_notifications += 1;
                    self.counters.falsely_downed.insert((identity.member, identity.generation));
                }
            }
            Notification::Rejoin(_) => self.counters.rejoins += 1,
            Notification::Rename(..) => self.counters.renames += 1,
            _ => {}
        }
    }
}

impl Runtime<SimIdentity> for SimRuntime<'_> {
    fn notify(&mut self, notification: Notification<'_, SimIdentity>) {
        self.network.observe(self.member, &notification);
    }

    fn send_to(&mut self, to: SimIdentity, data: &[u8]) {
        self.network.send(to.member, data);
    }

    fn submit_after(&mut self, timer: Timer<SimIdentity>, after: Duration) {
        let at_ns = self.network.now_ns + after.as_nanos() as u64 + self.network.timer_phase_ns;
        self.network.push(at_ns, EventKind::Timer { member: self.member, timer });
    }
}

impl PartialEq for Event {
    fn eq(&self, other: &Event) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Event {}

impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Event) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Deadline order; ties in the order they were queued.
impl Ord for Event {
    fn cmp(&self, other: &Event) -> Ordering {
        (self.at_ns, self.sequence).cmp(&(other.at_ns, other.sequence))
    }
}
