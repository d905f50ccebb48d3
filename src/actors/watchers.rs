//! [`Watchers`]: the local subscriptions of one presentity actor — who watches, with which
//! authorization status (SPEC §4), and who watches the watchers (`presence.winfo`). Owned by
//! the [`super::presentity::PresentityActor`]; not an actor itself.
//!
//! Invariants:
//! * a watcher whose status is pending or terminated never receives the document; a
//!   polite-blocked one receives only the neutral document;
//! * every change of the watcher set (new, status change, gone) is reported to the winfo
//!   subscribers as one partial document, with the full list alongside (sent instead when
//!   changes were coalesced).

use std::collections::HashMap;

use actix::prelude::*;

use super::dormant::{DormantSub, SubHandle, Waker};
use super::messages::{DialogMsg, Passivate, SetStatus, StateChanged};
use super::subscription::SubscriptionActor;
use crate::clock::Timestamp;
use crate::ids::PresentityUri;
use crate::presence::authz::{neutral_pidf, Decision, WatcherStatus};
use crate::presence::package::Body;
use crate::presence::packages::winfo::{document, DocState, WinfoWatcher};
use crate::presence::subscription::SubStatus;
use crate::store::WatcherRecord;

/// One watcher of the presentity's state.
pub(crate) struct Watcher {
    pub(crate) handle: SubHandle,
    pub(crate) uri: PresentityUri,
    pub(crate) status: WatcherStatus,
    /// Polite-block: sees only the neutral document.
    pub(crate) neutral: bool,
    pub(crate) since: Timestamp,
    pub(crate) expires_at: Timestamp,
    /// The last watcher-info event about it.
    pub(crate) last_event: &'static str,
}

/// The watchers and watcher-info subscribers of one presentity.
#[derive(Default)]
pub(crate) struct Watchers {
    presence: HashMap<String, Watcher>,
    winfo: HashMap<String, Addr<SubscriptionActor>>,
    /// Watcher URIs whose authorization state changed since [`Watchers::take_dirty`].
    dirty: Vec<PresentityUri>,
    /// DB-only mode: dialogs whose record must be read back from the store (their messages
    /// wait in [`SubHandle::Loading`]), since [`Watchers::take_to_load`].
    to_load: Vec<String>,
    /// No passivated dialog expires before this (exact after [`Watchers::wake_expired`], a
    /// lower bound in between): kept as dialogs fall asleep, so that finding the next
    /// wake-up after every message is not a scan of every watcher — which made a fan-out
    /// to N watchers cost N² steps.
    dormant_expiry: Option<Timestamp>,
}

impl Watchers {
    pub(crate) fn len(&self) -> usize {
        self.presence.len() + self.winfo.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.presence.is_empty() && self.winfo.is_empty()
    }

    /// Watchers of the state (not counting watcher-info subscribers).
    pub(crate) fn state_watchers(&self) -> usize {
        self.presence.len()
    }

    /// Adds a watcher and tells the winfo subscribers. A watcher rejected on arrival is only
    /// reported (event `rejected`), never listed: its subscription ends at once.
    pub(crate) fn add(
        &mut self,
        tag: String,
        mut w: Watcher,
        now: Timestamp,
        resource: &PresentityUri,
    ) {
        if matches!(w.status, WatcherStatus::Terminated { .. }) {
            w.last_event = "rejected";
            let change = winfo_entry(&tag, &w, now);
            return self.report(now, resource, vec![change]);
        }
        let change = winfo_entry(&tag, &w, now);
        self.dirty.push(w.uri.clone());
        if w.handle.is_asleep() {
            self.note_asleep(w.expires_at);
        }
        self.presence.insert(tag, w);
        self.report(now, resource, vec![change]);
    }

    /// Adds a watcher-info subscriber.
    pub(crate) fn add_winfo(&mut self, tag: String, addr: Addr<SubscriptionActor>) {
        self.winfo.insert(tag, addr);
    }

    /// Removes a subscription (of either kind); a watcher's departure is reported.
    pub(crate) fn remove(
        &mut self,
        tag: &str,
        reason: Option<&str>,
        now: Timestamp,
        resource: &PresentityUri,
    ) {
        if self.winfo.remove(tag).is_some() {
            return;
        }
        let Some(mut w) = self.presence.remove(tag) else {
            return;
        };
        w.last_event = match reason {
            Some("rejected") => "rejected",
            Some("timeout") => "timeout",
            Some("noresource") => "noresource",
            Some(r) if r.starts_with("notify-") => "giveup",
            _ => "deactivated",
        };
        w.status = WatcherStatus::Terminated {
            reason: reason.unwrap_or("deactivated").to_string(),
        };
        self.dirty.push(w.uri.clone());
        let change = winfo_entry(tag, &w, now);
        self.report(now, resource, vec![change]);
    }

    /// A refresh moved a watcher's expiry.
    pub(crate) fn refreshed(&mut self, tag: &str, expires_at: Timestamp) {
        if let Some(w) = self.presence.get_mut(tag) {
            w.expires_at = expires_at;
            if w.handle.is_asleep() {
                self.note_asleep(expires_at);
            }
        }
    }

    /// A passivated dialog expires at `at`: the next wake-up is no later.
    fn note_asleep(&mut self, at: Timestamp) {
        self.dormant_expiry = Some(earliest(self.dormant_expiry, at));
    }

    /// Sends the state to every authorized watcher except `skip` (`sender_header`), waking
    /// passivated ones.
    pub(crate) fn fan_out(
        &mut self,
        composed: &Option<Body>,
        neutral: &Body,
        skip: Option<&PresentityUri>,
        waker: &Waker,
    ) {
        for (tag, w) in self.presence.iter_mut() {
            if skip == Some(&w.uri) || !matches!(w.status, WatcherStatus::Active) {
                continue;
            }
            let body = if w.neutral {
                Some(neutral.clone())
            } else {
                composed.clone()
            };
            let msg = StateChanged {
                body: body.clone(),
                partial: None,
            };
            if w.handle.send(msg, waker, &body) {
                self.to_load.push(tag.clone());
            }
        }
    }

    /// Re-sends the current state to every watcher (`presence.refreshWatchers`).
    pub(crate) fn refresh_all(
        &mut self,
        composed: &Option<Body>,
        neutral: &Body,
        waker: &Waker,
    ) -> usize {
        self.fan_out(composed, neutral, None, waker);
        self.presence.len()
    }

    /// Applies new authorization decisions; notifies only the watchers whose status changed
    /// and reports them to the winfo subscribers. Returns how many changed.
    pub(crate) fn reevaluate(
        &mut self,
        decide: impl Fn(&PresentityUri) -> Decision,
        composed: &Option<Body>,
        neutral: &Body,
        now: Timestamp,
        resource: &PresentityUri,
        waker: &Waker,
    ) -> usize {
        let mut changes = Vec::new();
        for (tag, w) in self.presence.iter_mut() {
            let d = decide(&w.uri);
            if d.status == w.status && d.neutral_body == w.neutral {
                continue;
            }
            w.last_event = match (&w.status, &d.status) {
                (_, WatcherStatus::Terminated { .. }) => "rejected",
                (WatcherStatus::Pending | WatcherStatus::Waiting, WatcherStatus::Active) => {
                    "approved"
                }
                _ => "subscribe",
            };
            w.status = d.status.clone();
            w.neutral = d.neutral_body;
            self.dirty.push(w.uri.clone());
            let body = match (&d.status, d.neutral_body) {
                (WatcherStatus::Active, true) => Some(neutral.clone()),
                (WatcherStatus::Active, false) => composed.clone(),
                _ => None,
            };
            let msg = SetStatus {
                status: d.status.sub_status(),
                reason: d.status.reason().map(str::to_string),
                body: body.clone(),
            };
            if w.handle.send(msg, waker, &body) {
                self.to_load.push(tag.clone());
            }
            changes.push(winfo_entry(tag, w, now));
        }
        let n = changes.len();
        if n > 0 {
            self.report(now, resource, changes);
        }
        n
    }

    /// Delivers a shard-routed message to dialog `tag` (waking it if passivated); gives the
    /// message back if this presentity has no such dialog.
    pub(crate) fn deliver(
        &mut self,
        tag: &str,
        msg: DialogMsg,
        composed: &Option<Body>,
        neutral: &Body,
        waker: &Waker,
    ) -> Option<DialogMsg> {
        if let Some(addr) = self.winfo.get(tag) {
            match msg {
                DialogMsg::Refresh(m) => addr.do_send(m),
                DialogMsg::Replaced => addr.do_send(super::messages::Replaced),
                DialogMsg::Disown(m) => addr.do_send(m),
            }
            return None;
        }
        let Some(w) = self.presence.get_mut(tag) else {
            return Some(msg);
        };
        let body = if w.neutral {
            Some(neutral.clone())
        } else {
            composed.clone()
        };
        let load = match msg {
            DialogMsg::Refresh(m) => w.handle.send(m, waker, &body),
            DialogMsg::Replaced => w.handle.send(super::messages::Replaced, waker, &body),
            DialogMsg::Disown(m) => w.handle.send(m, waker, &body),
        };
        if load {
            self.to_load.push(tag.to_string());
        }
        None
    }

    /// Passivates the asking dialog if it is still this presentity's live watcher and has
    /// handled everything sent to it; returns the actor to stop.
    /// In DB-only mode (`keep_form` false) nothing is kept: the store has the dialog.
    pub(crate) fn passivate(
        &mut self,
        p: Passivate,
        keep_form: bool,
    ) -> Option<Addr<SubscriptionActor>> {
        let w = self.presence.get_mut(&p.tag)?;
        match &w.handle {
            SubHandle::Live { addr, sent } if *addr == p.addr && *sent == p.handled => {}
            _ => return None,
        }
        w.handle = if keep_form {
            SubHandle::Dormant(p.form)
        } else {
            SubHandle::Stored
        };
        let at = w.expires_at;
        self.note_asleep(at);
        Some(p.addr)
    }

    /// The dialogs to read back from the store (DB-only), each once.
    pub(crate) fn take_to_load(&mut self) -> Vec<String> {
        std::mem::take(&mut self.to_load)
    }

    /// A dialog read back from the store is running as `addr`: the messages that waited are
    /// delivered. `false` if the watcher is gone meanwhile (the caller stops the actor).
    pub(crate) fn loaded(&mut self, tag: &str, addr: Addr<SubscriptionActor>) -> bool {
        match self.presence.get_mut(tag) {
            Some(w) if matches!(w.handle, SubHandle::Loading(_)) => {
                w.handle.loaded(addr);
                true
            }
            _ => false,
        }
    }

    /// A dialog that could not be read back (missing or unreadable record): forgotten.
    pub(crate) fn load_failed(&mut self, tag: &str, now: Timestamp, resource: &PresentityUri) {
        self.remove(tag, Some("noresource"), now, resource);
    }

    /// One watcher (the document it may see: `neutral`).
    pub(crate) fn get(&self, tag: &str) -> Option<&Watcher> {
        self.presence.get(tag)
    }

    /// The earliest expiry of a passivated dialog (its presentity wakes it then).
    /// May be early (a dialog woken since): the wake-up then finds nothing expired and
    /// [`Watchers::wake_expired`] makes it exact.
    pub(crate) fn next_dormant_expiry(&self) -> Option<Timestamp> {
        self.dormant_expiry
    }

    /// Wakes every passivated dialog that has expired by `now`: its actor ends it (final
    /// NOTIFY, removal) as if it had never slept. Returns how many.
    pub(crate) fn wake_expired(
        &mut self,
        now: Timestamp,
        composed: &Option<Body>,
        neutral: &Body,
        waker: &Waker,
    ) -> usize {
        let mut n = 0;
        let mut unreadable = Vec::new();
        // The sleeping dialogs left after this pass: their earliest expiry, exactly.
        let mut next: Option<Timestamp> = None;
        for (tag, w) in self.presence.iter_mut() {
            if w.expires_at > now {
                if w.handle.is_asleep() {
                    next = Some(earliest(next, w.expires_at));
                }
                continue;
            }
            if matches!(w.handle, SubHandle::Stored) {
                // DB-only: read it back; its actor ends it once running.
                w.handle = SubHandle::Loading(Vec::new());
                self.to_load.push(tag.clone());
                n += 1;
                continue;
            }
            if let SubHandle::Dormant(d) = &w.handle {
                let body = if w.neutral {
                    Some(neutral.clone())
                } else {
                    composed.clone()
                };
                // The woken actor's expiry timer fires at once.
                match waker.wake(d, body) {
                    Some(addr) => {
                        w.handle = SubHandle::live(addr);
                        n += 1;
                    }
                    None => unreadable.push(tag.clone()),
                }
            }
        }
        for tag in unreadable {
            self.presence.remove(&tag);
        }
        self.dormant_expiry = next;
        n
    }

    /// The passivated dialog `tag`, if it is one.
    pub(crate) fn dormant(&self, tag: &str) -> Option<&DormantSub> {
        match self.presence.get(tag).map(|w| &w.handle) {
            Some(SubHandle::Dormant(d)) => Some(d),
            _ => None,
        }
    }

    /// How many watchers are passivated.
    pub(crate) fn dormant_count(&self) -> usize {
        self.presence
            .values()
            .filter(|w| w.handle.is_asleep())
            .count()
    }

    /// The watcher URIs whose state changed since the last call (each once).
    pub(crate) fn take_dirty(&mut self) -> Vec<PresentityUri> {
        let mut v = std::mem::take(&mut self.dirty);
        v.sort();
        v.dedup();
        v
    }

    /// The watchers-table record of `uri` (from its oldest dialog), `None` when it has no
    /// dialog left.
    pub(crate) fn record(&self, uri: &PresentityUri) -> Option<WatcherRecord> {
        let w = self
            .presence
            .values()
            .filter(|w| &w.uri == uri)
            .min_by_key(|w| w.since)?;
        Some(WatcherRecord {
            watcher: w.uri.clone(),
            status: w.status.as_str().to_string(),
            reason: w.status.reason().map(str::to_string),
            inserted_at: w.since,
            last_event: w.last_event.to_string(),
        })
    }

    /// The URIs of the state watchers (each once).
    pub(crate) fn uris(&self) -> Vec<PresentityUri> {
        let mut v: Vec<PresentityUri> = self.presence.values().map(|w| w.uri.clone()).collect();
        v.sort();
        v.dedup();
        v
    }

    /// (tag, uri, status) of every watcher, for listings.
    pub(crate) fn list(&self) -> Vec<(String, String, &'static str)> {
        self.presence
            .iter()
            .map(|(t, w)| (t.clone(), w.uri.to_string(), w.status.as_str()))
            .collect()
    }

    /// The full watcher-info document.
    pub(crate) fn winfo_full(&self, now: Timestamp, resource: &PresentityUri) -> Body {
        let all: Vec<WinfoWatcher> = self
            .presence
            .iter()
            .map(|(t, w)| winfo_entry(t, w, now))
            .collect();
        document(resource.as_str(), "presence", DocState::Full, &all)
    }

    fn report(&self, now: Timestamp, resource: &PresentityUri, changes: Vec<WinfoWatcher>) {
        if self.winfo.is_empty() {
            return;
        }
        let full = self.winfo_full(now, resource);
        let partial = document(resource.as_str(), "presence", DocState::Partial, &changes);
        for addr in self.winfo.values() {
            addr.do_send(StateChanged {
                body: Some(full.clone()),
                partial: Some(partial.clone()),
            });
        }
    }
}

/// The neutral document of a polite-blocked watcher (RFC 5025 §3.2.1).
pub(crate) fn neutral_body(presentity: &PresentityUri) -> Body {
    Body::new("application/pidf+xml", neutral_pidf(presentity.as_str()))
}

/// The initial [`SubStatus`] and reason of a new dialog from a decision.
pub(crate) fn initial_status(d: &Decision) -> (SubStatus, Option<String>) {
    (d.status.sub_status(), d.status.reason().map(str::to_string))
}

fn winfo_entry(tag: &str, w: &Watcher, now: Timestamp) -> WinfoWatcher {
    let terminated = matches!(w.status, WatcherStatus::Terminated { .. });
    WinfoWatcher {
        id: tag.to_string(),
        uri: w.uri.to_string(),
        status: w.status.as_str(),
        event: w.last_event,
        duration_subscribed: now.0.saturating_sub(w.since.0) / 1000,
        expiration: (!terminated).then(|| now.secs_until(w.expires_at)),
    }
}

/// The earlier of `at` and `so_far` (if any).
fn earliest(so_far: Option<Timestamp>, at: Timestamp) -> Timestamp {
    so_far.map_or(at, |t| t.min(at))
}
