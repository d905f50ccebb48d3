//! One SUBSCRIBE dialog on the notifier side (RFC 6665 §4.2): the pure state machine behind
//! a `SubscriptionActor`.
//!
//! It owns the dialog (tags, CSeqs, route set, remote target), the expiry, the watcher's
//! status, the last document to send, and the NOTIFY client transaction in flight.
//!
//! Invariants:
//! * At most one NOTIFY is in flight. A change that arrives meanwhile marks the dialog dirty;
//!   when the NOTIFY completes, one NOTIFY with the **latest** state follows (coalescing).
//! * The local CSeq strictly increases: every NOTIFY (and nothing else) takes `local_cseq + 1`.
//! * Once `terminated`, exactly one final NOTIFY (`Subscription-State: terminated`) is sent,
//!   then [`SubEffect::Remove`]; nothing is sent after it.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::ids::{DialogId, EventKey, PresentityUri};
use crate::presence::package::Body;
use crate::transaction::{ClientOutput, ClientTransaction, Timers};

/// The watcher's authorization status (RFC 6665 §4.1.3 / Kamailio's `status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubStatus {
    /// Authorized: NOTIFYs carry the state.
    Active,
    /// Waiting for authorization: NOTIFYs carry no body.
    Pending,
    /// Over: a final NOTIFY was or will be sent.
    Terminated,
}

impl SubStatus {
    /// The Subscription-State value word.
    pub fn as_str(self) -> &'static str {
        match self {
            SubStatus::Active => "active",
            SubStatus::Pending => "pending",
            SubStatus::Terminated => "terminated",
        }
    }
}

/// Everything that identifies and routes a dialog; the part that is stored and shown by the
/// debug endpoint (Kamailio's `$subs(...)` attributes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DialogState {
    /// Call-ID and tags.
    pub id: DialogId,
    /// The presentity (`$subs(uri)`).
    pub presentity: PresentityUri,
    /// The event package.
    pub event: EventKey,
    /// The Event header's `id` parameter, echoed in every NOTIFY.
    pub event_id: Option<String>,
    /// The watcher URI (From, or `watcher_uri_header`), normalised.
    pub watcher: PresentityUri,
    /// The SUBSCRIBE's To URI: the From URI of our NOTIFYs.
    pub to_uri: String,
    /// The SUBSCRIBE's From URI: the To URI of our NOTIFYs.
    pub from_uri: String,
    /// Remote target: the SUBSCRIBE's Contact URI (the NOTIFY Request-URI).
    pub contact: String,
    /// Route set from Record-Route, in order (each `<uri;lr>`).
    pub route_set: Vec<String>,
    /// Our Contact (`server_address`).
    pub local_contact: String,
    /// Last CSeq received from the watcher.
    pub remote_cseq: u32,
    /// Last CSeq we used for a NOTIFY.
    pub local_cseq: u32,
    /// When the subscription expires (absolute).
    pub expires_at: Timestamp,
    /// Authorization status.
    pub status: SubStatus,
    /// Termination reason (`timeout`, `rejected`, `noresource`, …) once terminated.
    pub reason: Option<String>,
    /// Per-subscription document version (winfo/dialog packages), +1 per NOTIFY with a body.
    pub version: u32,
    /// The watcher's User-Agent.
    pub user_agent: Option<String>,
    /// The transport the SUBSCRIBE came over (`udp` / `tcp`), used for NOTIFYs.
    pub transport: String,
    /// The SUBSCRIBE's source address (`ip:port`), the fallback destination.
    pub source: String,
}

/// Tunables from `[presence]`.
#[derive(Clone, Copy, Debug)]
pub struct SubscriptionRules {
    /// `cseq_offset`: tolerated offset between expected and received CSeq.
    pub cseq_offset: u32,
    /// `timeout_rm_subs`: a NOTIFY timeout (408 / Timer F) removes the subscription.
    pub timeout_rm_subs: bool,
    /// `send_fast_notify`: send the first NOTIFY even when there is no state.
    pub send_fast_notify: bool,
    /// SIP timers for the NOTIFY client transaction.
    pub timers: Timers,
}

/// What the actor must do after an input.
#[derive(Clone, Debug, PartialEq)]
pub enum SubEffect {
    /// Build and send a new NOTIFY with this CSeq, state header and body (start of a client
    /// transaction; the actor keeps the encoded bytes for retransmission).
    Notify(NotifySpec),
    /// Send the in-flight NOTIFY again (Timer E).
    Retransmit,
    /// The subscription is over: unregister and stop.
    Remove,
}

/// The dialog-dependent parts of one NOTIFY.
#[derive(Clone, Debug, PartialEq)]
pub struct NotifySpec {
    /// CSeq number.
    pub cseq: u32,
    /// Subscription-State value.
    pub state: SubStatus,
    /// `expires=` for active/pending.
    pub expires: u32,
    /// `reason=` for terminated.
    pub reason: Option<String>,
    /// Body to send (only when active and state exists).
    pub body: Option<Body>,
    /// The document version for this NOTIFY (packages that number documents per watcher
    /// rewrite it into the body).
    pub version: u32,
}

/// Why an in-dialog SUBSCRIBE was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    /// CSeq not greater than the last one (beyond `cseq_offset`): 500 with Retry-After
    /// (RFC 3261 §12.2.2). State unchanged.
    #[error("CSeq {got} is not greater than {last}")]
    StaleCSeq {
        /// Received CSeq.
        got: u32,
        /// Last accepted CSeq.
        last: u32,
    },
    /// The dialog is already terminated: 481. State unchanged.
    #[error("subscription already terminated")]
    Terminated,
}

impl RefreshError {
    /// The SIP status that answers this error.
    pub fn status_code(&self) -> u16 {
        match self {
            RefreshError::StaleCSeq { .. } => 500,
            RefreshError::Terminated => 481,
        }
    }
}

/// How a NOTIFY transaction ended, for the debug endpoint (`$notify_reply`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyReply {
    /// Status code (408 for a Timer F timeout).
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
}

/// One subscription dialog.
#[derive(Debug)]
pub struct Subscription {
    dialog: DialogState,
    rules: SubscriptionRules,
    reliable: bool,
    /// Latest document of the presentity (already authorized for this watcher).
    body: Option<Body>,
    /// A partial document to send instead of `body` with the next NOTIFY (see
    /// [`Subscription::state_changed_with_delta`]).
    partial: Option<Body>,
    in_flight: Option<InFlight>,
    /// A change happened while a NOTIFY was in flight.
    dirty: bool,
    /// The final NOTIFY has been queued or sent.
    final_sent: bool,
    last_reply: Option<NotifyReply>,
}

#[derive(Debug)]
struct InFlight {
    cseq: u32,
    tx: ClientTransaction,
    is_final: bool,
}

impl Subscription {
    /// A new dialog (initial SUBSCRIBE accepted, or a fetch when `expires_at <= now`).
    /// Returns the first NOTIFY (RFC 6665 §4.2.1.1) unless `send_fast_notify` is off and there
    /// is no state to send.
    pub fn start(
        now: Timestamp,
        dialog: DialogState,
        rules: SubscriptionRules,
        body: Option<Body>,
    ) -> (Self, Vec<SubEffect>) {
        let reliable = !dialog.transport.eq_ignore_ascii_case("udp");
        let mut sub = Subscription {
            dialog,
            rules,
            reliable,
            body,
            partial: None,
            in_flight: None,
            dirty: false,
            final_sent: false,
            last_reply: None,
        };
        let mut effects = Vec::new();
        if sub.dialog.expires_at <= now {
            sub.terminate(now, "timeout", &mut effects);
        } else if sub.rules.send_fast_notify || sub.body.is_some() {
            sub.notify_or_mark(now, &mut effects);
        }
        (sub, effects)
    }

    /// A dialog restored from the store after a restart: no 200 and no NOTIFY now; the next
    /// NOTIFY continues with `local_cseq + 1` (the caller raises `local_cseq` first when the
    /// stored value may lag, as in write-back mode).
    pub fn restore(dialog: DialogState, rules: SubscriptionRules) -> Self {
        let reliable = !dialog.transport.eq_ignore_ascii_case("udp");
        Subscription {
            dialog,
            rules,
            reliable,
            body: None,
            partial: None,
            in_flight: None,
            dirty: false,
            final_sent: false,
            last_reply: None,
        }
    }

    /// A dialog woken from its passivated form: as [`Subscription::restore`], keeping the
    /// last NOTIFY reply it had (`$notify_reply`).
    pub fn wake(
        dialog: DialogState,
        rules: SubscriptionRules,
        last_reply: Option<NotifyReply>,
    ) -> Self {
        let mut sub = Subscription::restore(dialog, rules);
        sub.last_reply = last_reply;
        sub
    }

    /// Nothing is going on but waiting for expiry: no NOTIFY in flight or due, not
    /// terminated. Only such a dialog may be passivated (its whole state is then the
    /// [`DialogState`] and the last reply; a completed transaction only absorbs
    /// retransmitted responses, which a passivated dialog drops just as well).
    pub fn is_quiescent(&self) -> bool {
        !self.notify_in_flight()
            && !self.dirty
            && !self.final_sent
            && self.dialog.status != SubStatus::Terminated
    }

    /// Sends a NOTIFY with the current state now (a dialog taken over from another node: the
    /// NOTIFY's Contact moves the watcher's remote target to this node, RFC 6665 §4.1.3).
    pub fn resend(&mut self, now: Timestamp) -> Vec<SubEffect> {
        let mut effects = Vec::new();
        if self.dialog.status != SubStatus::Terminated {
            self.notify_or_mark(now, &mut effects);
        }
        effects
    }

    /// Sets the document without notifying (used right after [`Subscription::restore`]).
    pub fn set_body(&mut self, body: Option<Body>) {
        self.body = body;
    }

    /// An in-dialog SUBSCRIBE (refresh, or un-subscribe when `expires_at <= now`) with CSeq
    /// `cseq`. On success a NOTIFY with the current state follows (RFC 6665 §4.2.1.2).
    pub fn refresh(
        &mut self,
        now: Timestamp,
        cseq: u32,
        expires_at: Timestamp,
    ) -> Result<Vec<SubEffect>, RefreshError> {
        if self.dialog.status == SubStatus::Terminated {
            return Err(RefreshError::Terminated);
        }
        let last = self.dialog.remote_cseq;
        if cseq.saturating_add(self.rules.cseq_offset) <= last {
            return Err(RefreshError::StaleCSeq { got: cseq, last });
        }
        self.dialog.remote_cseq = cseq.max(last);
        self.dialog.expires_at = expires_at;
        let mut effects = Vec::new();
        if expires_at <= now {
            self.terminate(now, "timeout", &mut effects);
        } else {
            self.notify_or_mark(now, &mut effects);
        }
        Ok(effects)
    }

    /// The presentity's state changed: notify with the new document (coalesced).
    pub fn state_changed(&mut self, now: Timestamp, body: Option<Body>) -> Vec<SubEffect> {
        self.state_changed_with_delta(now, body, None)
    }

    /// As [`Subscription::state_changed`], with a `partial` document describing only this
    /// change (watcherinfo, RFC 3858 §4.2). It is sent instead of the full document when the
    /// watcher has already received a document and nothing else is pending; a change that
    /// has to wait behind a NOTIFY in flight is covered later by the full document.
    pub fn state_changed_with_delta(
        &mut self,
        now: Timestamp,
        body: Option<Body>,
        partial: Option<Body>,
    ) -> Vec<SubEffect> {
        self.body = body;
        self.partial =
            partial.filter(|_| self.dialog.version > 0 && !self.notify_in_flight() && !self.dirty);
        let mut effects = Vec::new();
        if self.dialog.status != SubStatus::Terminated {
            self.notify_or_mark(now, &mut effects);
        }
        effects
    }

    /// The watcher's authorization status changed (pending → active, or rejected).
    pub fn set_status(
        &mut self,
        now: Timestamp,
        status: SubStatus,
        reason: Option<&str>,
    ) -> Vec<SubEffect> {
        let mut effects = Vec::new();
        if self.dialog.status == status || self.dialog.status == SubStatus::Terminated {
            return effects;
        }
        if status == SubStatus::Terminated {
            self.terminate(now, reason.unwrap_or("rejected"), &mut effects);
        } else {
            self.dialog.status = status;
            self.notify_or_mark(now, &mut effects);
        }
        effects
    }

    /// Ends the subscription with a final NOTIFY (`reason`, e.g. `noresource` at shutdown).
    pub fn end(&mut self, now: Timestamp, reason: &str) -> Vec<SubEffect> {
        let mut effects = Vec::new();
        if self.dialog.status != SubStatus::Terminated {
            self.terminate(now, reason, &mut effects);
        }
        effects
    }

    /// A response to our NOTIFY with CSeq `cseq`.
    pub fn on_notify_response(
        &mut self,
        now: Timestamp,
        cseq: u32,
        status: u16,
        reason: &str,
    ) -> Vec<SubEffect> {
        let mut effects = Vec::new();
        let Some(flight) = self.in_flight.as_mut() else {
            return effects;
        };
        if flight.cseq != cseq {
            return effects;
        }
        match flight.tx.on_response(now, status) {
            ClientOutput::Final(code) => {
                self.last_reply = Some(NotifyReply {
                    status: code,
                    reason: reason.to_string(),
                });
                self.notify_completed(now, code, &mut effects);
            }
            ClientOutput::TimedOut => {
                self.notify_timed_out(now, &mut effects);
            }
            _ => {}
        }
        effects
    }

    /// A timer fired: subscription expiry and/or the NOTIFY transaction's timers.
    pub fn on_timer(&mut self, now: Timestamp) -> Vec<SubEffect> {
        let mut effects = Vec::new();
        if let Some(flight) = self.in_flight.as_mut() {
            if flight.tx.next_deadline().is_some_and(|d| d <= now) {
                match flight.tx.on_timer(now) {
                    ClientOutput::Retransmit => effects.push(SubEffect::Retransmit),
                    ClientOutput::TimedOut => self.notify_timed_out(now, &mut effects),
                    ClientOutput::Final(code) => self.notify_completed(now, code, &mut effects),
                    ClientOutput::Terminated => {
                        if self
                            .in_flight
                            .as_ref()
                            .is_some_and(|f| f.tx.is_terminated())
                        {
                            self.in_flight = None;
                        }
                    }
                    ClientOutput::Nothing | ClientOutput::Provisional(_) => {}
                }
            }
        }
        if self.dialog.status != SubStatus::Terminated && self.dialog.expires_at <= now {
            self.terminate(now, "timeout", &mut effects);
        }
        effects
    }

    /// The earliest time [`Subscription::on_timer`] must run.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        let tx = self.in_flight.as_ref().and_then(|f| f.tx.next_deadline());
        let expiry =
            (self.dialog.status != SubStatus::Terminated).then_some(self.dialog.expires_at);
        match (tx, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The dialog state (for storage and the debug endpoint).
    pub fn dialog(&self) -> &DialogState {
        &self.dialog
    }

    /// The last NOTIFY reply (`$notify_reply`).
    pub fn last_reply(&self) -> Option<&NotifyReply> {
        self.last_reply.as_ref()
    }

    /// Whether a NOTIFY is in flight.
    pub fn notify_in_flight(&self) -> bool {
        self.in_flight
            .as_ref()
            .is_some_and(|f| !f.tx.is_completed())
    }

    fn terminate(&mut self, now: Timestamp, reason: &str, effects: &mut Vec<SubEffect>) {
        self.dialog.status = SubStatus::Terminated;
        self.dialog.reason = Some(reason.to_string());
        self.notify_or_mark(now, effects);
    }

    /// Sends a NOTIFY now if none is in flight, otherwise remembers that one is due.
    fn notify_or_mark(&mut self, now: Timestamp, effects: &mut Vec<SubEffect>) {
        if self.final_sent {
            return;
        }
        if self.notify_in_flight() {
            self.dirty = true;
            return;
        }
        self.dirty = false;
        self.dialog.local_cseq = self.dialog.local_cseq.wrapping_add(1).max(1);
        let cseq = self.dialog.local_cseq;
        let is_final = self.dialog.status == SubStatus::Terminated;
        self.final_sent = is_final;
        let current = match self.partial.take() {
            Some(p) if !is_final => Some(p),
            _ => self.body.clone(),
        };
        let body = match self.dialog.status {
            SubStatus::Active | SubStatus::Terminated => current,
            SubStatus::Pending => None,
        };
        // A rejected watcher never gets the document.
        let body = if is_final && self.dialog.reason.as_deref() == Some("rejected") {
            None
        } else {
            body
        };
        // Per-watcher document version (RFC 4235 §4.1, RFC 3858 §4.2): 0 for the first NOTIFY
        // carrying a document, +1 for each one after.
        let version = self.dialog.version;
        if body.is_some() {
            self.dialog.version = self.dialog.version.wrapping_add(1);
        }
        self.in_flight = Some(InFlight {
            cseq,
            tx: ClientTransaction::start(now, self.reliable, self.rules.timers),
            is_final,
        });
        effects.push(SubEffect::Notify(NotifySpec {
            cseq,
            state: self.dialog.status,
            expires: now.secs_until(self.dialog.expires_at),
            reason: self.dialog.reason.clone().filter(|_| is_final),
            body,
            version,
        }));
    }

    fn notify_completed(&mut self, now: Timestamp, code: u16, effects: &mut Vec<SubEffect>) {
        let was_final = self.in_flight.as_ref().is_some_and(|f| f.is_final);
        if was_final {
            effects.push(SubEffect::Remove);
            return;
        }
        // RFC 6665 §4.2.2: 481 and 404 mean the subscriber is gone.
        if code == 404 || code == 481 || (code == 408 && self.rules.timeout_rm_subs) {
            self.drop_silently(code, effects);
            return;
        }
        if self.dirty {
            self.notify_or_mark(now, effects);
        }
    }

    fn notify_timed_out(&mut self, now: Timestamp, effects: &mut Vec<SubEffect>) {
        self.last_reply = Some(NotifyReply {
            status: 408,
            reason: "Request Timeout".into(),
        });
        self.notify_completed(now, 408, effects);
    }

    /// Removes the subscription without another NOTIFY (the watcher is unreachable or gone).
    fn drop_silently(&mut self, code: u16, effects: &mut Vec<SubEffect>) {
        self.dialog.status = SubStatus::Terminated;
        self.dialog.reason = Some(format!("notify-{code}"));
        self.final_sent = true;
        effects.push(SubEffect::Remove);
    }
}

#[cfg(test)]
mod tests;
