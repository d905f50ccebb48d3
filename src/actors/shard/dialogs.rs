//! The shard's dialog index as dialogs come and go: registration (also of a woken dialog's
//! new actor), removal, passivation (the stopped actor is forgotten) and the cluster's fence
//! (passed on to every live dialog actor).

use std::sync::Arc;

use actix::prelude::*;

use super::{actor_key, DialogEntry, Shard};
use crate::actors::messages::{DialogAsleep, DialogGone, Fence, RegisterDialog, Stop};

impl Handler<RegisterDialog> for Shard {
    type Result = ();

    fn handle(&mut self, msg: RegisterDialog, _: &mut Context<Self>) {
        if self.ctx.delete_same_subs {
            self.same_subs.insert(msg.same_key.clone(), msg.tag.clone());
        }
        // A woken dialog registers again under its tag: it keeps its slot.
        let slot = match self.dialogs.remove(&msg.tag) {
            Some(old) => old.slot,
            None => self.ctx.watcher_subs.enter(msg.watcher),
        };
        let winfo = msg.event.as_str().ends_with(".winfo");
        let k = actor_key(msg.same_key.0, &msg.event);
        let key = match self.presentities.get_key_value(&k) {
            Some((shared, _)) => shared.clone(),
            None => Arc::new(k),
        };
        let entry = DialogEntry {
            addr: msg.addr,
            key,
            winfo,
            slot,
        };
        self.dialogs.insert(msg.tag, entry);
    }
}

impl Handler<DialogGone> for Shard {
    type Result = ();

    fn handle(&mut self, msg: DialogGone, _: &mut Context<Self>) {
        if let Some(addr) = self.dialogs.remove(&msg.tag).and_then(|e| e.addr) {
            addr.do_send(Stop);
        }
        if self.same_subs.get(&msg.same_key) == Some(&msg.tag) {
            self.same_subs.remove(&msg.same_key);
        }
    }
}

impl Handler<Fence> for Shard {
    type Result = ();

    fn handle(&mut self, msg: Fence, _: &mut Context<Self>) {
        // Passivated dialogs need nothing: a woken one waits at the gate when it starts.
        for addr in self.dialogs.values().filter_map(|d| d.addr.as_ref()) {
            addr.do_send(msg);
        }
    }
}

impl Handler<DialogAsleep> for Shard {
    type Result = ();

    fn handle(&mut self, msg: DialogAsleep, _: &mut Context<Self>) {
        // A dialog woken since registered its new actor: only the stopped one is forgotten.
        if let Some(e) = self.dialogs.get_mut(&msg.tag) {
            if e.addr.as_ref() == Some(&msg.addr) {
                e.addr = None;
            }
        }
    }
}
