//! Non-INVITE client transactions (RFC 3261 §17.1.2, Figure 6), used for the NOTIFYs we send.
//!
//! Owns one request's state machine: Trying → Proceeding → Completed → Terminated, with
//! Timer E (retransmission, unreliable transports only), Timer F (timeout, 64·T1) and Timer K
//! (absorbing response retransmissions, T4 unreliable / zero reliable). It never sees the
//! request bytes: [`ClientOutput::Retransmit`] tells the caller to resend what it holds.
//!
//! Invariants:
//!
//! * A final outcome — [`ClientOutput::Final`] or [`ClientOutput::TimedOut`] — is reported
//!   at most once per transaction, never both.
//! * Once terminated, every call returns [`ClientOutput::Nothing`] and no deadline is set.
//! * After [`ClientTransaction::on_timer`]`(now)` the next deadline, if any, is after `now`:
//!   one call per wake-up is enough, and a late wake-up sends one retransmission, not a burst.
//! * The transaction is terminated at once (no Timer K) when a final response arrives over a
//!   reliable transport or Timer F fires; the caller drops it when
//!   [`is_terminated`](ClientTransaction::is_terminated) turns true.
//!   [`ClientOutput::Terminated`] is only returned when Timer K ends a Completed transaction.

use std::time::Duration;

use crate::clock::Timestamp;
use crate::transaction::timers::Timers;

/// What the caller must do after feeding an event to a [`ClientTransaction`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientOutput {
    /// Nothing to do.
    Nothing,
    /// Timer E fired: resend the request now.
    Retransmit,
    /// A new provisional status arrived (reported once per change of status).
    Provisional(u16),
    /// The final response's status; reported once, later duplicates are absorbed.
    Final(u16),
    /// Timer F fired without a final response: treat as 408 Request Timeout. Reported once.
    TimedOut,
    /// Timer K fired: the Completed transaction is over; drop it.
    Terminated,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// One non-INVITE client transaction. Sans-IO: feed responses and `now`, call
/// [`on_timer`](Self::on_timer) at [`next_deadline`](Self::next_deadline).
#[derive(Clone, Debug)]
pub struct ClientTransaction {
    state: State,
    reliable: bool,
    timers: Timers,
    /// Next retransmission; `None` over reliable transports and once completed.
    timer_e: Option<Timestamp>,
    /// The interval Timer E is re-armed with next time it fires (before the Proceeding rule).
    interval_e: Duration,
    /// Transaction timeout; `None` once completed.
    timer_f: Option<Timestamp>,
    /// End of the Completed state; set only while Completed.
    timer_k: Option<Timestamp>,
    /// Last provisional status reported, to report each change once.
    last_provisional: Option<u16>,
    /// A final response was seen or Timer F fired.
    completed: bool,
    retransmissions: u32,
}

impl ClientTransaction {
    /// Starts a transaction for a request just sent at `now`: Trying, Timer E at T1 (only over
    /// an unreliable transport), Timer F at 64·T1.
    pub fn start(now: Timestamp, reliable: bool, timers: Timers) -> Self {
        ClientTransaction {
            state: State::Trying,
            reliable,
            timers,
            timer_e: (!reliable).then(|| now.plus(timers.t1)),
            interval_e: timers.t1,
            timer_f: Some(now.plus(timers.timer_f())),
            timer_k: None,
            last_provisional: None,
            completed: false,
            retransmissions: 0,
        }
    }

    /// Feeds a response status. 1xx → Proceeding, reported when the status changes; ≥ 200 →
    /// reported once as [`ClientOutput::Final`], then Completed (Timer K = T4) over an
    /// unreliable transport or Terminated over a reliable one. Statuses outside 100–699 and
    /// anything after completion are ignored.
    pub fn on_response(&mut self, now: Timestamp, status: u16) -> ClientOutput {
        if !matches!(self.state, State::Trying | State::Proceeding)
            || !(100..=699).contains(&status)
        {
            return ClientOutput::Nothing;
        }
        if status < 200 {
            self.state = State::Proceeding;
            if self.last_provisional == Some(status) {
                return ClientOutput::Nothing;
            }
            self.last_provisional = Some(status);
            return ClientOutput::Provisional(status);
        }
        self.completed = true;
        self.timer_e = None;
        self.timer_f = None;
        let timer_k = self.timers.timer_k(self.reliable);
        if timer_k.is_zero() {
            self.state = State::Terminated;
        } else {
            self.state = State::Completed;
            self.timer_k = Some(now.plus(timer_k));
        }
        ClientOutput::Final(status)
    }

    /// Runs the timers due at `now`, at most one output per call. Timer F wins over Timer E
    /// when both are due. Timer E re-arms from `now`: doubling up to T2 while Trying, T2 while
    /// Proceeding.
    pub fn on_timer(&mut self, now: Timestamp) -> ClientOutput {
        let due = |t: Option<Timestamp>| t.is_some_and(|t| t <= now);
        match self.state {
            State::Terminated => ClientOutput::Nothing,
            State::Completed if due(self.timer_k) => {
                self.terminate();
                ClientOutput::Terminated
            }
            State::Completed => ClientOutput::Nothing,
            State::Trying | State::Proceeding if due(self.timer_f) => {
                self.completed = true;
                self.terminate();
                ClientOutput::TimedOut
            }
            State::Trying | State::Proceeding if due(self.timer_e) => {
                self.retransmissions = self.retransmissions.saturating_add(1);
                self.interval_e = if self.state == State::Proceeding {
                    self.timers.t2
                } else {
                    self.interval_e.saturating_mul(2).min(self.timers.t2)
                };
                self.timer_e = Some(now.plus(self.interval_e));
                ClientOutput::Retransmit
            }
            State::Trying | State::Proceeding => ClientOutput::Nothing,
        }
    }

    /// When [`on_timer`](Self::on_timer) next has work to do; `None` once terminated.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        [self.timer_e, self.timer_f, self.timer_k]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether the transaction is over; the caller drops it.
    pub fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }

    /// Whether the outcome is known: a final response was seen or Timer F fired.
    pub fn is_completed(&self) -> bool {
        self.completed
    }

    /// How many times Timer E asked for the request to be resent.
    pub fn retransmissions(&self) -> u32 {
        self.retransmissions
    }

    fn terminate(&mut self) {
        self.state = State::Terminated;
        self.timer_e = None;
        self.timer_f = None;
        self.timer_k = None;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const T0: Timestamp = Timestamp(5_000_000);

    fn at(ms: u64) -> Timestamp {
        Timestamp(T0.0 + ms)
    }

    /// Fires every deadline up to `until` (a faithful caller), returning (time, output) pairs.
    fn run_until(tx: &mut ClientTransaction, until: Timestamp) -> Vec<(u64, ClientOutput)> {
        let mut out = Vec::new();
        while let Some(d) = tx.next_deadline().filter(|d| *d <= until) {
            out.push((d.0 - T0.0, tx.on_timer(d)));
        }
        out
    }

    #[test]
    fn timer_e_doubles_to_t2_over_udp() {
        let mut tx = ClientTransaction::start(T0, false, Timers::default());
        let fired = run_until(&mut tx, at(16_000));
        let times: Vec<u64> = fired.iter().map(|(t, _)| *t).collect();
        // Gaps 500, 1000, 2000, 4000, 4000, 4000 ms.
        assert_eq!(times, vec![500, 1_500, 3_500, 7_500, 11_500, 15_500]);
        assert!(fired.iter().all(|(_, o)| *o == ClientOutput::Retransmit));
        assert_eq!(tx.retransmissions(), 6);
        assert_eq!(tx.next_deadline(), Some(at(19_500)));
    }

    #[test]
    fn provisional_switches_timer_e_to_t2() {
        let mut tx = ClientTransaction::start(T0, false, Timers::default());
        assert_eq!(tx.on_timer(at(500)), ClientOutput::Retransmit);
        assert_eq!(tx.on_response(at(600), 100), ClientOutput::Provisional(100));
        assert_eq!(tx.on_response(at(700), 100), ClientOutput::Nothing);
        assert_eq!(tx.on_response(at(800), 180), ClientOutput::Provisional(180));
        // Already armed for 1500; from then on every T2.
        let times: Vec<u64> = run_until(&mut tx, at(10_000))
            .iter()
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(times, vec![1_500, 5_500, 9_500]);
        assert!(!tx.is_completed());
    }

    #[test]
    fn timer_f_times_out_once_at_32_s() {
        let mut tx = ClientTransaction::start(T0, false, Timers::default());
        let fired = run_until(&mut tx, at(60_000));
        let (last_t, last) = fired[fired.len() - 1];
        assert_eq!((last_t, last), (32_000, ClientOutput::TimedOut));
        assert_eq!(
            fired
                .iter()
                .filter(|(_, o)| *o == ClientOutput::TimedOut)
                .count(),
            1
        );
        // E at 500, 1500, 3500, 7500, then every 4 s up to 31 500.
        assert_eq!(tx.retransmissions(), 10);
        assert!(tx.is_terminated() && tx.is_completed());
        assert_eq!(tx.next_deadline(), None);
        assert_eq!(tx.on_timer(at(70_000)), ClientOutput::Nothing);
        assert_eq!(tx.on_response(at(70_000), 200), ClientOutput::Nothing);
    }

    #[test]
    fn no_retransmissions_over_reliable_transport() {
        let mut tx = ClientTransaction::start(T0, true, Timers::default());
        assert_eq!(tx.next_deadline(), Some(at(32_000)));
        let fired = run_until(&mut tx, at(40_000));
        assert_eq!(fired, vec![(32_000, ClientOutput::TimedOut)]);
        assert_eq!(tx.retransmissions(), 0);
    }

    #[test]
    fn final_once_then_timer_k_terminates() {
        let mut tx = ClientTransaction::start(T0, false, Timers::default());
        assert_eq!(tx.on_response(at(200), 200), ClientOutput::Final(200));
        assert!(tx.is_completed() && !tx.is_terminated());
        assert_eq!(tx.on_response(at(300), 200), ClientOutput::Nothing);
        assert_eq!(tx.on_response(at(300), 481), ClientOutput::Nothing);
        assert_eq!(tx.on_response(at(300), 180), ClientOutput::Nothing);
        assert_eq!(tx.next_deadline(), Some(at(5_200)));
        assert_eq!(tx.on_timer(at(5_199)), ClientOutput::Nothing);
        assert_eq!(tx.on_timer(at(5_200)), ClientOutput::Terminated);
        assert!(tx.is_terminated());
        assert_eq!(tx.on_timer(at(9_000)), ClientOutput::Nothing);
        assert_eq!(tx.retransmissions(), 0);
    }

    #[test]
    fn reliable_final_terminates_at_once() {
        let mut tx = ClientTransaction::start(T0, true, Timers::default());
        assert_eq!(tx.on_response(at(10), 100), ClientOutput::Provisional(100));
        assert_eq!(tx.on_response(at(20), 404), ClientOutput::Final(404));
        assert!(tx.is_terminated() && tx.is_completed());
        assert_eq!(tx.next_deadline(), None);
    }

    #[test]
    fn invalid_statuses_are_ignored() {
        let mut tx = ClientTransaction::start(T0, false, Timers::default());
        assert_eq!(tx.on_response(at(1), 99), ClientOutput::Nothing);
        assert_eq!(tx.on_response(at(1), 700), ClientOutput::Nothing);
        assert!(!tx.is_completed());
        assert_eq!(tx.on_response(at(1), 699), ClientOutput::Final(699));
    }

    #[derive(Clone, Debug)]
    enum Ev {
        Advance(u64),
        Response(u16),
        Timer,
    }

    fn ev() -> impl Strategy<Value = Ev> {
        prop_oneof![
            (0u64..9_000).prop_map(Ev::Advance),
            prop::sample::select(vec![
                42u16, 100, 180, 183, 200, 202, 404, 408, 500, 699, 700
            ])
            .prop_map(Ev::Response),
            Just(Ev::Timer),
        ]
    }

    proptest! {
        /// `faithful`: every deadline is fired on time as time advances; otherwise the caller
        /// only calls `on_timer` when the sequence says so (late wake-ups).
        #[test]
        fn invariants_hold_for_any_event_sequence(
            reliable in any::<bool>(),
            faithful in any::<bool>(),
            evs in prop::collection::vec(ev(), 0..60),
        ) {
            let timers = Timers::default();
            let mut tx = ClientTransaction::start(T0, reliable, timers);
            let mut now = T0;
            let mut outcomes = 0;
            let mut retransmits = 0;
            let mut was_terminated = false;
            let mut check = |tx: &ClientTransaction, out: ClientOutput, now: Timestamp, timer: bool|
                -> Result<(), TestCaseError> {
                if was_terminated {
                    prop_assert_eq!(out, ClientOutput::Nothing);
                    prop_assert!(tx.is_terminated());
                }
                match out {
                    ClientOutput::Final(_) | ClientOutput::TimedOut => outcomes += 1,
                    ClientOutput::Retransmit => retransmits += 1,
                    ClientOutput::Provisional(_) => prop_assert!(!tx.is_completed()),
                    ClientOutput::Terminated => prop_assert!(!reliable && tx.is_completed()),
                    ClientOutput::Nothing => {}
                }
                prop_assert!(outcomes <= 1, "final outcome reported twice");
                prop_assert_eq!(tx.retransmissions(), retransmits);
                prop_assert!(!(reliable && retransmits > 0));
                if timer || faithful {
                    let next = tx.next_deadline();
                    prop_assert!(next.is_none_or(|d| d > now), "deadline in the past");
                }
                if !tx.is_completed() {
                    let timer_f = T0.plus(timers.timer_f());
                    prop_assert!(tx.next_deadline().is_some_and(|d| d <= timer_f));
                }
                prop_assert_eq!(tx.is_terminated(), tx.next_deadline().is_none());
                was_terminated = tx.is_terminated();
                Ok(())
            };
            for e in evs {
                match e {
                    Ev::Advance(ms) => {
                        let target = Timestamp(now.0 + ms);
                        if faithful {
                            while let Some(d) = tx.next_deadline().filter(|d| *d <= target) {
                                now = d;
                                let out = tx.on_timer(now);
                                check(&tx, out, now, true)?;
                            }
                        }
                        now = target;
                    }
                    Ev::Response(s) => {
                        let out = tx.on_response(now, s);
                        check(&tx, out, now, false)?;
                    }
                    Ev::Timer => {
                        let out = tx.on_timer(now);
                        check(&tx, out, now, true)?;
                    }
                }
            }
            // Liveness: a faithful caller always reaches Terminated, with exactly one outcome.
            let end = Timestamp(now.0 + 100_000);
            while let Some(d) = tx.next_deadline().filter(|d| *d <= end) {
                let out = tx.on_timer(d);
                check(&tx, out, d, true)?;
            }
            prop_assert!(tx.is_terminated());
            prop_assert_eq!(outcomes, 1);
        }
    }
}
