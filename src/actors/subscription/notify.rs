//! A dialog's NOTIFYs: the responses to them (matched by branch, fed to the core, shown
//! to the notify-reply hook), and building and sending them: the next hop, the headers, the per-watcher body
//! post-processing; the encoded bytes are kept for Timer E retransmissions, with the guard
//! that counts the NOTIFY against `max_pending_notifies`.

use actix::prelude::*;

use super::{InFlightNotify, SubscriptionActor};
use crate::actors::messages::NotifyResponse;
use crate::clock;
use crate::events::NotifyReplyInfo;
use crate::ids::mint_branch;
use crate::presence::subscription::SubEffect;
use crate::presence::subscription::{NotifySpec, SubStatus};
use crate::sip::headers::{Event, SubscriptionState};
use crate::sip::{encode_notify, NotifyParams};
use crate::transport::{Proto, Target};

impl SubscriptionActor {
    /// Sends the NOTIFY of `spec`; `false` when it could not be sent at all (no usable
    /// target or transport), which the caller treats as a transport failure.
    pub(super) fn send_notify(&mut self, spec: &NotifySpec) -> bool {
        let d = self.core.dialog();
        self.ctx.events.emit(
            "notify",
            d.presentity.as_str(),
            d.event.as_str(),
            || serde_json::json!({"dialog": d.id.local_tag, "cseq": spec.cseq, "state": spec.state.as_str(), "reason": spec.reason, "body": spec.body.is_some()}),
        );
        let Some(target) = next_hop(d) else {
            tracing::info!(dialog = %d.id, contact = %d.contact, "NOTIFY not sent: unusable remote target");
            self.ctx.metrics.notify_failed("no_target");
            return false;
        };
        let Some((via_host, via_port)) = self.ctx.sender.sent_by(target.proto) else {
            tracing::info!(dialog = %d.id, "NOTIFY not sent: no listener for {}", target.proto.as_str());
            self.ctx.metrics.notify_failed("transport");
            return false;
        };
        let mut event: Event = d
            .event
            .as_str()
            .parse()
            .unwrap_or_else(|_| Event::new(d.event.as_str()));
        event.id = d.event_id.clone();
        let state = match spec.state {
            SubStatus::Active => SubscriptionState::active(spec.expires),
            SubStatus::Pending => SubscriptionState::pending(spec.expires),
            SubStatus::Terminated => {
                SubscriptionState::terminated(spec.reason.as_deref().unwrap_or("timeout"))
            }
        };
        let branch = mint_branch();
        // Per-watcher post-processing (Kamailio's aux_body_processing), e.g. dialog `version`.
        let processed = spec.body.as_ref().and_then(|b| {
            let pkg = self.ctx.packages.find(&d.event)?;
            pkg.aux_body(b, spec.version)
        });
        let body = processed
            .as_ref()
            .or(spec.body.as_ref())
            .map(|b| (b.content_type.as_str(), &b.bytes[..]));
        let params = NotifyParams {
            request_uri: &d.contact,
            route: &d.route_set,
            via_transport: target.proto.via_name(),
            via_host,
            via_port,
            branch: &branch,
            from_uri: &d.to_uri,
            from_tag: &d.id.local_tag,
            to_uri: &d.from_uri,
            to_tag: &d.id.remote_tag,
            call_id: &d.id.call_id,
            cseq: spec.cseq,
            contact: &self.ctx.server_address,
            event: &event,
            subscription_state: &state,
            body,
            extra_headers: &[],
        };
        let bytes = encode_notify(&params, self.ctx.sender.server_header());
        self.ctx.sender.send_request(&target, bytes.clone());
        self.ctx.metrics.notify_sent();
        self.in_flight = Some(InFlightNotify {
            target,
            bytes,
            branch,
            _pending: self.ctx.pending_notifies.start(),
        });
        true
    }
}

impl Handler<NotifyResponse> for SubscriptionActor {
    type Result = ();

    fn handle(&mut self, msg: NotifyResponse, ctx: &mut Context<Self>) {
        if self.gone {
            return;
        }
        let d = self.core.dialog();
        if self.ctx.remove_match_full
            && (msg.call_id != d.id.call_id || msg.remote_tag.as_deref() != Some(&d.id.remote_tag))
        {
            tracing::debug!(dialog = %d.id, "NOTIFY response ignored: dialog mismatch");
            return;
        }
        if let Some(f) = &self.in_flight {
            if msg.branch.as_deref() != Some(f.branch.as_str()) {
                // RFC 3261 §17.1.3: a response matches the transaction by its top Via branch.
                tracing::debug!(dialog = %d.id, "NOTIFY response ignored: another branch");
                return;
            }
        }
        let was_in_flight = self.core.notify_in_flight();
        let d = self.core.dialog();
        self.ctx.events.emit(
            "notify-reply",
            d.presentity.as_str(),
            d.event.as_str(),
            || serde_json::json!({"dialog": d.id.local_tag, "cseq": msg.cseq, "status": msg.status, "reason": msg.reason}),
        );
        let delete = self.ctx.notify_reply_hook.as_ref().is_some_and(|hook| {
            hook(&NotifyReplyInfo {
                presentity: d.presentity.to_string(),
                watcher: d.watcher.to_string(),
                event: d.event.to_string(),
                dialog: d.id.local_tag.clone(),
                status: msg.status,
                reason: msg.reason.clone(),
            })
        });
        let mut fx = self
            .core
            .on_notify_response(clock::now(), msg.cseq, msg.status, &msg.reason);
        if msg.status >= 300 && was_in_flight && !self.core.notify_in_flight() {
            self.ctx.metrics.notify_failed("rejected");
        }
        if delete && !fx.contains(&SubEffect::Remove) {
            tracing::info!(dialog = %self.core.dialog().id, "subscription deleted by the notify-reply hook");
            fx.push(SubEffect::Remove);
        }
        if !self.core.notify_in_flight() {
            self.in_flight = None;
        }
        self.apply(fx, ctx);
    }
}

/// The next hop of a NOTIFY: the first route (loose routing), else the remote target.
/// Transport: the URI's `transport` parameter, else the one the SUBSCRIBE came over.
fn next_hop(d: &crate::presence::subscription::DialogState) -> Option<Target> {
    let uri = match d.route_set.first() {
        Some(r) => r
            .trim()
            .trim_start_matches('<')
            .split('>')
            .next()
            .unwrap_or(""),
        None => d.contact.as_str(),
    };
    let default = if d.transport == "tcp" {
        Proto::Tcp
    } else {
        Proto::Udp
    };
    Target::from_uri(uri, default)
}
