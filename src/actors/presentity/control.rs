//! Authorization control of a presentity actor (SPEC §4, §5): setting and reading its rule
//! document, re-evaluating its watchers (`presence.updateWatchers`), answering
//! `pres_auth_status`, listing watchers. Sent by the admin endpoint through the shard.

use actix::prelude::*;
use bytes::Bytes;

use super::PresentityActor;
use crate::clock;
use crate::ids::PresentityUri;
use crate::presence::authz::{Decision, RuleSet};

/// Re-decide every watcher; answers how many changed status.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct UpdateWatchers;

/// Set (`Some`) or remove (`None`) the rule document; `Err` is why it was refused.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct SetRules(pub Option<Vec<u8>>);

/// The rule document as stored.
#[derive(Message)]
#[rtype(result = "Option<String>")]
pub struct GetRules;

/// The decision for this watcher now (`pres_auth_status`).
#[derive(Message)]
#[rtype(result = "Decision")]
pub struct AuthStatus(pub PresentityUri);

/// (tag, watcher URI, status) of every watcher.
#[derive(Message)]
#[rtype(result = "Vec<(String, String, &'static str)>")]
pub struct ListWatchers;

impl Handler<UpdateWatchers> for PresentityActor {
    type Result = usize;

    fn handle(&mut self, _: UpdateWatchers, ctx: &mut Context<Self>) -> usize {
        self.handled += 1;
        // Decide first (it needs `&mut self` for the lazy rule load), then apply.
        let decisions: Vec<(PresentityUri, Decision)> = self
            .watchers
            .uris()
            .into_iter()
            .map(|u| {
                let d = self.decide(&u);
                (u, d)
            })
            .collect();
        let uri = self.core.uri().clone();
        let waker = self.waker();
        let changed = self.watchers.reevaluate(
            |w| {
                decisions
                    .iter()
                    .find(|(u, _)| u == w)
                    .map(|(_, d)| d.clone())
                    .unwrap_or_else(Decision::pending)
            },
            &self.composed,
            &self.neutral,
            clock::now(),
            &uri,
            &waker,
        );
        self.after_message(ctx);
        changed
    }
}

impl Handler<SetRules> for PresentityActor {
    type Result = Result<(), String>;

    fn handle(&mut self, msg: SetRules, ctx: &mut Context<Self>) -> Self::Result {
        self.handled += 1;
        let result = match msg.0 {
            Some(doc) => RuleSet::parse_with(&doc, self.ctx.ingress.uri_match).and_then(|rules| {
                self.ctx
                    .persist
                    .set_rules(self.core.uri(), Some(&doc))
                    .map_err(|e| e.to_string())?;
                self.rules = Some((Bytes::from(doc), rules));
                Ok(())
            }),
            None => self
                .ctx
                .persist
                .set_rules(self.core.uri(), None)
                .map_err(|e| e.to_string())
                .map(|()| {
                    self.rules = None;
                }),
        };
        self.rules_loaded = true;
        self.after_message(ctx);
        result
    }
}

impl Handler<GetRules> for PresentityActor {
    type Result = Option<String>;

    fn handle(&mut self, _: GetRules, ctx: &mut Context<Self>) -> Option<String> {
        self.handled += 1;
        let _ = self.rules();
        let doc = self
            .rules
            .as_ref()
            .map(|(d, _)| String::from_utf8_lossy(d).into_owned());
        self.after_message(ctx);
        doc
    }
}

impl Handler<AuthStatus> for PresentityActor {
    type Result = MessageResult<AuthStatus>;

    fn handle(&mut self, msg: AuthStatus, ctx: &mut Context<Self>) -> Self::Result {
        self.handled += 1;
        let d = self.decide(&msg.0);
        self.after_message(ctx);
        MessageResult(d)
    }
}

impl Handler<ListWatchers> for PresentityActor {
    type Result = MessageResult<ListWatchers>;

    fn handle(&mut self, _: ListWatchers, ctx: &mut Context<Self>) -> Self::Result {
        self.handled += 1;
        let list = self.watchers.list();
        self.after_message(ctx);
        MessageResult(list)
    }
}
