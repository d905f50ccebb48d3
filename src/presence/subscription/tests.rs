//! Lifecycle tests of one subscription dialog with a virtual clock.

use super::*;
use crate::ids::UriMatch;

fn rules() -> SubscriptionRules {
    SubscriptionRules {
        cseq_offset: 0,
        timeout_rm_subs: true,
        send_fast_notify: true,
        timers: Timers::default(),
    }
}

fn dialog(now: Timestamp, expires: u64, transport: &str) -> DialogState {
    DialogState {
        id: DialogId {
            call_id: "c1".into(),
            remote_tag: "w1".into(),
            local_tag: "l1".into(),
        },
        presentity: PresentityUri::parse("sip:alice@example.com", UriMatch::CaseSensitive).unwrap(),
        event: EventKey::new("presence"),
        event_id: None,
        watcher: PresentityUri::parse("sip:bob@example.com", UriMatch::CaseSensitive).unwrap(),
        to_uri: "sip:alice@example.com".into(),
        from_uri: "sip:bob@example.com".into(),
        contact: "sip:bob@127.0.0.1:5090".into(),
        route_set: vec![],
        local_contact: "sip:127.0.0.1:5060".into(),
        remote_cseq: 1,
        local_cseq: 0,
        expires_at: now.plus_secs(expires),
        status: SubStatus::Active,
        reason: None,
        version: 0,
        user_agent: None,
        transport: transport.into(),
        source: "127.0.0.1:5090".into(),
    }
}

fn body(s: &str) -> Body {
    Body {
        content_type: "application/pidf+xml".into(),
        bytes: bytes::Bytes::copy_from_slice(s.as_bytes()),
    }
}

fn notify(effects: &[SubEffect]) -> &NotifySpec {
    match effects.iter().find(|e| matches!(e, SubEffect::Notify(_))) {
        Some(SubEffect::Notify(n)) => n,
        _ => panic!("expected a NOTIFY in {effects:?}"),
    }
}

#[test]
fn initial_notify_then_refresh_with_increasing_cseq() {
    let t0 = Timestamp(1_000_000);
    let (mut s, fx) = Subscription::start(t0, dialog(t0, 600, "udp"), rules(), Some(body("a")));
    let n = notify(&fx);
    assert_eq!((n.cseq, n.state, n.expires), (1, SubStatus::Active, 600));
    assert_eq!(n.body, Some(body("a")));
    assert!(s.on_notify_response(t0, 1, 200, "OK").is_empty());
    let fx = s.refresh(t0.plus_secs(10), 2, t0.plus_secs(1000)).unwrap();
    let n = notify(&fx);
    assert_eq!((n.cseq, n.expires), (2, 990));
    assert_eq!(s.dialog().remote_cseq, 2);
}

#[test]
fn stale_cseq_is_refused_with_500_and_offset_tolerates() {
    let t0 = Timestamp(5_000);
    let (mut s, _) = Subscription::start(t0, dialog(t0, 600, "udp"), rules(), None);
    let err = s.refresh(t0, 1, t0.plus_secs(60)).unwrap_err();
    assert_eq!(err.status_code(), 500);
    let mut r = rules();
    r.cseq_offset = 2;
    let (mut s, _) = Subscription::start(t0, dialog(t0, 600, "udp"), r, None);
    assert!(s.refresh(t0, 1, t0.plus_secs(60)).is_ok());
}

#[test]
fn changes_during_flight_are_coalesced_into_latest() {
    let t0 = Timestamp(0);
    let (mut s, fx) = Subscription::start(t0, dialog(t0, 600, "udp"), rules(), Some(body("a")));
    assert_eq!(notify(&fx).cseq, 1);
    assert!(s.state_changed(t0, Some(body("b"))).is_empty());
    assert!(s.state_changed(t0, Some(body("c"))).is_empty());
    let fx = s.on_notify_response(t0, 1, 200, "OK");
    let n = notify(&fx);
    assert_eq!(n.cseq, 2);
    assert_eq!(n.body, Some(body("c")));
    // A response for a CSeq not in flight changes nothing.
    assert!(s.on_notify_response(t0, 1, 200, "OK").is_empty());
}

#[test]
fn unsubscribe_sends_final_notify_then_removes() {
    let t0 = Timestamp(0);
    let (mut s, _) = Subscription::start(t0, dialog(t0, 600, "udp"), rules(), Some(body("a")));
    s.on_notify_response(t0, 1, 200, "OK");
    let fx = s.refresh(t0, 2, t0).unwrap();
    let n = notify(&fx);
    assert_eq!(n.state, SubStatus::Terminated);
    assert_eq!(n.reason.as_deref(), Some("timeout"));
    assert_eq!(n.body, Some(body("a")));
    let fx = s.on_notify_response(t0, 2, 200, "OK");
    assert_eq!(fx, vec![SubEffect::Remove]);
    assert_eq!(s.refresh(t0, 3, t0).unwrap_err().status_code(), 481);
}

#[test]
fn fetch_is_one_terminated_notify() {
    let t0 = Timestamp(10_000);
    let (mut s, fx) = Subscription::start(t0, dialog(t0, 0, "udp"), rules(), Some(body("x")));
    let n = notify(&fx);
    assert_eq!(n.state, SubStatus::Terminated);
    assert_eq!(n.body, Some(body("x")));
    assert_eq!(
        s.on_notify_response(t0, 1, 200, "OK"),
        vec![SubEffect::Remove]
    );
}

#[test]
fn expiry_sends_terminated_timeout() {
    let t0 = Timestamp(0);
    let (mut s, _) = Subscription::start(t0, dialog(t0, 30, "tcp"), rules(), None);
    s.on_notify_response(t0, 1, 200, "OK");
    assert_eq!(s.next_deadline(), Some(t0.plus_secs(30)));
    let fx = s.on_timer(t0.plus_secs(30));
    let n = notify(&fx);
    assert_eq!(n.state, SubStatus::Terminated);
    assert_eq!(n.reason.as_deref(), Some("timeout"));
}

#[test]
fn notify_481_and_404_remove_and_408_per_rule() {
    for code in [404u16, 481] {
        let t0 = Timestamp(0);
        let (mut s, _) = Subscription::start(t0, dialog(t0, 600, "udp"), rules(), None);
        assert_eq!(
            s.on_notify_response(t0, 1, code, "x"),
            vec![SubEffect::Remove]
        );
    }
    let t0 = Timestamp(0);
    let mut keep = rules();
    keep.timeout_rm_subs = false;
    let (mut s, _) = Subscription::start(t0, dialog(t0, 600, "udp"), keep, None);
    assert!(s.on_notify_response(t0, 1, 408, "Timeout").is_empty());
    let (mut s, _) = Subscription::start(t0, dialog(t0, 600, "udp"), rules(), None);
    assert_eq!(
        s.on_notify_response(t0, 1, 408, "Timeout"),
        vec![SubEffect::Remove]
    );
    assert_eq!(s.last_reply().map(|r| r.status), Some(408));
}

#[test]
fn unanswered_notify_is_retransmitted_then_times_out() {
    let t0 = Timestamp(0);
    let (mut s, _) = Subscription::start(t0, dialog(t0, 3600, "udp"), rules(), None);
    let mut now = t0;
    let mut retransmits = 0;
    let mut removed = false;
    for _ in 0..100 {
        let Some(d) = s.next_deadline() else { break };
        now = d;
        for e in s.on_timer(now) {
            match e {
                SubEffect::Retransmit => retransmits += 1,
                SubEffect::Remove => removed = true,
                SubEffect::Notify(_) => panic!("no new NOTIFY expected"),
            }
        }
        if removed {
            break;
        }
    }
    assert!(removed, "Timer F must remove the subscription");
    assert!(retransmits >= 5, "got {retransmits} retransmissions");
    assert_eq!(now, t0.plus_secs(32));
}

#[test]
fn send_fast_notify_off_skips_empty_first_notify() {
    let t0 = Timestamp(0);
    let mut r = rules();
    r.send_fast_notify = false;
    let (_, fx) = Subscription::start(t0, dialog(t0, 600, "udp"), r, None);
    assert!(fx.is_empty());
    let (_, fx) = Subscription::start(t0, dialog(t0, 600, "udp"), r, Some(body("a")));
    assert_eq!(notify(&fx).cseq, 1);
}

#[test]
fn pending_watcher_gets_no_body_and_rejected_never_does() {
    let t0 = Timestamp(0);
    let mut d = dialog(t0, 600, "udp");
    d.status = SubStatus::Pending;
    let (mut s, fx) = Subscription::start(t0, d, rules(), Some(body("secret")));
    let n = notify(&fx);
    assert_eq!((n.state, n.body.is_none()), (SubStatus::Pending, true));
    s.on_notify_response(t0, 1, 200, "OK");
    let fx = s.set_status(t0, SubStatus::Terminated, Some("rejected"));
    let n = notify(&fx);
    assert_eq!(n.state, SubStatus::Terminated);
    assert!(n.body.is_none());
}

#[test]
fn version_counts_notifies_with_a_document_from_zero() {
    let t0 = Timestamp(0);
    let (mut s, fx) = Subscription::start(t0, dialog(t0, 600, "udp"), rules(), None);
    assert!(notify(&fx).body.is_none());
    s.on_notify_response(t0, 1, 200, "OK");
    let fx = s.state_changed(t0, Some(body("a")));
    assert_eq!(notify(&fx).version, 0, "first NOTIFY with a document");
    s.on_notify_response(t0, 2, 200, "OK");
    let fx = s.state_changed(t0, Some(body("b")));
    assert_eq!(notify(&fx).version, 1);
    assert_eq!(s.dialog().version, 2, "stored counter is the next version");
}

#[test]
fn partial_documents_follow_the_first_full_one_unless_coalesced() {
    let t0 = Timestamp(0);
    let (mut s, fx) =
        Subscription::start(t0, dialog(t0, 600, "udp"), rules(), Some(body("full-1")));
    assert_eq!(
        notify(&fx).body,
        Some(body("full-1")),
        "the first document is full"
    );
    s.on_notify_response(t0, 1, 200, "OK");
    let fx = s.state_changed_with_delta(t0, Some(body("full-2")), Some(body("delta-2")));
    assert_eq!(notify(&fx).body, Some(body("delta-2")));
    // While that NOTIFY is in flight, two more changes arrive: the follow-up must be full.
    assert!(s
        .state_changed_with_delta(t0, Some(body("full-3")), Some(body("delta-3")))
        .is_empty());
    assert!(s
        .state_changed_with_delta(t0, Some(body("full-4")), Some(body("delta-4")))
        .is_empty());
    let fx = s.on_notify_response(t0, 2, 200, "OK");
    assert_eq!(notify(&fx).body, Some(body("full-4")));
}

#[test]
fn quiescent_only_between_notifies_and_wake_continues_cseq_and_version() {
    let t0 = Timestamp(1_000_000);
    let (mut s, fx) = Subscription::start(t0, dialog(t0, 600, "tcp"), rules(), Some(body("a")));
    assert_eq!(notify(&fx).cseq, 1);
    assert!(!s.is_quiescent(), "a NOTIFY is in flight");
    s.on_notify_response(t0.plus(std::time::Duration::from_millis(10)), 1, 200, "OK");
    assert!(s.is_quiescent(), "nothing pending after the 200");

    // Passivated form: the dialog state and the last reply; woken, it goes on.
    let (d, reply) = (s.dialog().clone(), s.last_reply().cloned());
    assert_eq!(reply.as_ref().map(|r| r.status), Some(200));
    let mut w = Subscription::wake(d, rules(), reply);
    assert!(w.is_quiescent());
    assert_eq!(w.last_reply().map(|r| r.status), Some(200));
    let fx = w.state_changed(
        t0.plus(std::time::Duration::from_millis(20)),
        Some(body("b")),
    );
    let n = notify(&fx);
    assert_eq!(n.cseq, 2, "CSeq continues after waking");
    assert_eq!(n.version, 1, "version continues after waking");
    assert!(!w.is_quiescent());

    // A terminated dialog is never quiescent.
    w.on_notify_response(t0.plus(std::time::Duration::from_millis(25)), 2, 200, "OK");
    assert!(w.is_quiescent());
    let fx = w.end(t0.plus(std::time::Duration::from_millis(30)), "noresource");
    assert_eq!(notify(&fx).state, SubStatus::Terminated);
    w.on_notify_response(t0.plus(std::time::Duration::from_millis(35)), 3, 200, "OK");
    assert!(!w.is_quiescent());
}
