//! The cluster side of a dialog's actor: another node owns it now ([`Disown`]), or this
//! node must hold its NOTIFYs until the ownership of its dialogs is settled ([`Fence`], and
//! dialogs restored or woken while the settlement gate is closed) — see
//! `crate::actors::replication::settle`.

use actix::prelude::*;

use super::SubscriptionActor;
use crate::actors::messages::{Disown, Fence};
use crate::actors::replication::OwnerOf;

impl Handler<Fence> for SubscriptionActor {
    type Result = ();

    fn handle(&mut self, _: Fence, ctx: &mut Context<Self>) {
        if !self.gone {
            self.fence(ctx);
        }
    }
}

impl Handler<Disown> for SubscriptionActor {
    type Result = ();

    fn handle(&mut self, _: Disown, ctx: &mut Context<Self>) {
        self.handled += 1;
        self.disown(ctx);
    }
}

impl SubscriptionActor {
    /// Another node owns the dialog: stop here without a NOTIFY. The cluster record belongs
    /// to the new owner: the dialog is forgotten on this node only.
    fn disown(&mut self, ctx: &mut Context<Self>) {
        if self.gone {
            return;
        }
        tracing::info!(dialog = %self.core.dialog().id, "another node owns this subscription now; stopping here");
        self.unregister_from(false);
        self.rearm(ctx);
    }

    /// A dialog restored (or read back) before the cluster settled the ownership of restored
    /// subscriptions — or any live dialog of a node fenced for want of a majority — waits,
    /// its mailbox and timers held, until it is settled, then stops quietly if another node
    /// took it over meanwhile (see `replication::settle`). Costs nothing once settled, and
    /// nothing without a cluster.
    pub(super) fn fence(&mut self, ctx: &mut Context<Self>) {
        // Every woken dialog passes here: look before cloning anything.
        let Some(gate) = &self.ctx.cluster_settled else {
            return;
        };
        if *gate.borrow() {
            return;
        }
        let mut gate = gate.clone();
        let Some(replication) = self.ctx.replication.clone() else {
            return;
        };
        let id = self.core.dialog().id.clone();
        let owner = async move {
            // A closed gate (the replication actor is gone: shutting down) opens it too.
            let _ = gate.wait_for(|settled| *settled).await;
            replication.send(OwnerOf(id)).await.ok().flatten()
        };
        ctx.wait(owner.into_actor(self).map(|owner, this, ctx| {
            if owner.is_some_and(|o| o != this.ctx.node_id) {
                this.disown(ctx);
            }
        }));
    }
}
