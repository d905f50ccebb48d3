//! Authorization of a presentity actor (SPEC §4, §5): its rule document (from the package or
//! read from the store off the actor thread) and decisions; setting and reading its rule
//! document, re-evaluating its watchers (`presence.updateWatchers`), answering
//! `pres_auth_status`, listing watchers. Sent by the admin endpoint through the shard.

use actix::prelude::*;
use bytes::Bytes;

use super::PresentityActor;
use crate::clock;
use crate::ids::PresentityUri;
use crate::presence::authz::{sphere_of, Decision, RuleSet};

impl PresentityActor {
    /// The rule document: the package's own (`get_rules_doc`) or the stored one, which the
    /// actor read off its thread when it started (see `started`) — or, when authorization is
    /// not in effect, which `GetRules` reads on demand. Never read from the store here.
    pub(super) fn rules(&mut self) -> Option<&RuleSet> {
        if !self.rules_loaded {
            if let Some(doc) = self.pkg.rules_doc(self.core.uri()) {
                self.install_rules(Some(doc));
            }
        }
        self.rules.as_ref().map(|(_, r)| r)
    }

    /// Parses and keeps a rule document (`None`: there is none); marks the rules loaded.
    pub(super) fn install_rules(&mut self, doc: Option<Vec<u8>>) {
        self.rules_loaded = true;
        self.rules = None;
        if let Some(doc) = doc {
            match RuleSet::parse_with(&doc, self.ctx.ingress.uri_match) {
                Ok(r) => self.rules = Some((Bytes::from(doc), r)),
                Err(e) => {
                    tracing::warn!(presentity = %self.core.uri(), reason = %e, "stored rule document ignored")
                }
            }
        }
    }

    /// The authorization decision for `watcher` (SPEC §4); packages without `req_auth`
    /// authorize everyone.
    pub(super) fn decide(&mut self, watcher: &PresentityUri) -> Decision {
        if !self.pkg.req_auth() {
            return Decision::active();
        }
        let sphere_check = self.ctx.sphere_check;
        if sphere_check {
            self.fresh_composed();
        }
        let sphere = sphere_check
            .then(|| self.composed.as_ref().and_then(|b| sphere_of(&b.bytes)))
            .flatten();
        let (policy, uri, pkg) = (self.ctx.policy, self.core.uri().clone(), self.pkg.clone());
        pkg.auth_status(
            policy,
            self.rules(),
            watcher,
            &uri,
            sphere.as_deref(),
            sphere_check,
        )
    }
}

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
        self.fresh_composed();
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
    type Result = ResponseActFuture<Self, Option<String>>;

    fn handle(&mut self, _: GetRules, ctx: &mut Context<Self>) -> Self::Result {
        self.handled += 1;
        let _ = self.rules();
        self.after_message(ctx);
        let text = |this: &Self| {
            this.rules
                .as_ref()
                .map(|(d, _)| String::from_utf8_lossy(d).into_owned())
        };
        if self.rules_loaded {
            return Box::pin(actix::fut::ready(text(self)));
        }
        // Not read yet (authorization is not in effect): read it off this thread.
        let load = self.ctx.persist.load_rules(self.core.uri().clone());
        Box::pin(load.into_actor(self).map(move |doc, this, _| {
            if !this.rules_loaded {
                this.install_rules(doc);
            }
            text(this)
        }))
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
